"""tools/compare_with_authors.py against a directory laid out like the authors' repository,
built from released_reference.py (their architecture, losses and train-mode dataset written
from their published code), at reduced widths (ResNet base 16, FPN / heads 64) so that it runs
in seconds. The targets are issue 29's: training with handobj_d2's released config equals
training with their code."""

import contextlib
import io
import json
from pathlib import Path

import pytest
from released_reference import write_fake_checkout

from tools import compare_with_authors

MANO = str(Path(__file__).parent / "fixtures" / "mano" / "mano_format_random_chumpy.pkl")
NARROW_OPTS = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "16",
    "MODEL.FPN.OUT_CHANNELS", "64",
    "MODEL.HANDOBJ.HAND.HOURGLASS_PLANES", "32",
    "MODEL.HANDOBJ.HAND.MESH_CHANNELS", "64",
]  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("authors")
    checkout = write_fake_checkout(folder / "Semi-Hand-Object", width=16, channels=64)
    argv = ["--authors-code", str(checkout), "--mano-root", MANO, "--workdir",
            str(folder / "work"), "--size", "128", "--train-size", "128", "--repeats", "2",
            *NARROW_OPTS]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compare_with_authors.main(argv) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_prints_the_json(result):
    for key in ("inference_max_abs", "losses", "max_rel_loss_diff", "max_rel_grad_diff",
                "max_rel_weight_diff_after_steps", "targets_max_abs", "train_step_seconds",
                "dtype"):  # fmt: skip
        assert key in result
    assert set(result["inference_max_abs"]) >= {"joints2d_px", "joints3d_mm", "vertices_mm"}
    assert set(result["targets_max_abs"]) >= {"joints2d_px", "hand_box_px", "object_box_px",
                                              "control_points_px", "image_grey_levels",
                                              "mask_cells"}  # fmt: skip
    assert result["losses"]["obj_reg_loss"]["authors"] > 0


def test_inference_equal(result):
    """float64: both networks' outputs agree to rounding."""
    inference = result["inference_max_abs"]
    assert inference["joints2d_px"] <= 1e-3
    assert inference["joints3d_mm"] <= 1e-3
    assert inference["vertices_mm"] <= 1e-3
    assert inference["object_votes_px"] <= 1e-3


def test_loss_formulas_and_gradients_equal_with_the_same_norms(result):
    """With both sides' BatchNorms on their running statistics, every loss and gradient agrees:
    the losses and heads are the authors'."""
    same = result["with_norms_in_eval_on_both_sides"]
    assert same["max_rel_loss_diff"] <= 1e-5
    assert same["max_rel_grad_diff"] <= 1e-4


def test_targets_compared_under_non_trivial_draws(result):
    """Part d gives both data pipelines the same random draws, none of them the identity."""
    draws = result["targets_max_abs"]["draws"]
    assert abs(draws["angle_rad"]) > 1e-3 and abs(draws["scale"] - 1) > 1e-3
    assert min(abs(v) for v in draws["center_offset"]) > 1e-4 and draws["blur_radius_px"] > 0
    assert set(draws["color"]) == {"brightness", "contrast", "saturation", "hue"}
    assert sorted(draws["color_order"]) == sorted(draws["color"])


def test_adam_amplifies_gradient_rounding(result):
    """Why (c) steps both optimisers on the same gradients: one Adam step moves weights by more
    than the 1e-5 target when the gradients differ by 1e-9 of their largest element."""
    assert result["adam_one_step_rel_weight_change_from_1e-9_gradient_noise"] > 1e-5


@pytest.mark.parametrize("key", sorted(compare_with_authors.TARGETS))
def test_released_recipe_target(result, key):
    """Issue 29's targets for the released config as shipped (training norms, optimiser set-up,
    training boxes, crop, augmentation and object mask pooling)."""
    value = result
    for part in key.split("."):
        value = value[part]
    assert value <= compare_with_authors.TARGETS[key], f"{key} = {value}"
