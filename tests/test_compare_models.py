"""tools/compare_models.py and handobj_d2.engine.comparison: two models, one picture per batch
of inputs, the baseline's row on top."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from handobj_d2.data.datasets.ho3d import register_ho3d
from handobj_d2.engine import HandObjectPredictor, setup_cfg
from handobj_d2.engine.comparison import (
    CAPTION_HEIGHT,
    ComparedModel,
    compare_models,
    dataset_inputs,
)
from handobj_d2.utils.io import read_image
from handobj_d2.visualization import draw_hand_object

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "synthetic" / "handobj_tiny.yaml")


def _predictor(seed):
    torch.manual_seed(seed)
    return HandObjectPredictor(setup_cfg(CONFIG, ["MODEL.WEIGHTS", ""]))


@pytest.fixture(scope="module")
def compare_eval(tiny_synthetic_root):
    name = "compare_tiny_eval"
    if name not in DatasetCatalog.list():
        register_ho3d(name, str(tiny_synthetic_root), "evaluation", "v2")
    return name


def test_pictures_hold_one_row_per_model_and_one_column_per_input(compare_eval, tmp_path):
    inputs = dataset_inputs(compare_eval, 3)
    assert len(inputs) == 3 and all(x.hand_box is not None for x in inputs)
    models = [ComparedModel("baseline", _predictor(0)), ComparedModel("ours", _predictor(1))]
    pictures = compare_models(models, inputs, str(tmp_path), per_picture=2)
    assert [Path(p).name for p in pictures] == ["comparison_000.png", "comparison_001.png"]

    image = read_image(inputs[0].file_name)
    height, width = image.shape[:2]
    first = read_image(pictures[0])
    # 2 models x (caption + image) high, 2 inputs wide; the last picture is padded to 2 inputs.
    assert first.shape == (2 * (CAPTION_HEIGHT + height), 2 * width, 3)
    last = read_image(pictures[1])
    assert last.shape == first.shape
    assert last[:, width:].max() == 0  # the fourth cell of each row: black

    # The top-left cell is the baseline's drawing of the first input, the one below it the
    # other model's.
    expected = []
    for model in models:
        output = model.predictor(image, camera_K=inputs[0].camera_K, hand_box=inputs[0].hand_box,
                                 object_box=inputs[0].object_box,
                                 control_points3d=inputs[0].control_points3d)  # fmt: skip
        expected.append(draw_hand_object(image, output["instances"].to("cpu"), inputs[0].camera_K,
                                         model.predictor.hand_faces,
                                         inputs[0].control_points3d))  # fmt: skip
    np.testing.assert_array_equal(first[CAPTION_HEIGHT : CAPTION_HEIGHT + height, :width],
                                  expected[0])  # fmt: skip
    np.testing.assert_array_equal(first[2 * CAPTION_HEIGHT + height :, :width], expected[1])
    assert (expected[0] != expected[1]).any()  # two different models

    # comparison.json: every input, both models, the 2D error against the record's joints.
    entries = json.loads((tmp_path / "comparison.json").read_text())
    record = DatasetCatalog.get(compare_eval)[0]
    gt = np.asarray(record["annotations"][0]["joints2d"])
    output = models[1].predictor(image, camera_K=inputs[0].camera_K, hand_box=inputs[0].hand_box,
                                 object_box=inputs[0].object_box)  # fmt: skip
    error = np.sqrt(((output["instances"].pred_joints2d[0].numpy() - gt) ** 2).sum(-1)).mean()
    assert len(entries) == 3
    assert entries[0]["ours"]["joints2d_error_px"] == pytest.approx(error, rel=1e-5)
    assert entries[0]["baseline"]["hand_found"] and entries[2]["ours"]["hand_found"]


def test_command_line_compares_and_names_bad_input(tiny_synthetic_root, tmp_path):
    tool = str(ROOT / "tools" / "compare_models.py")
    env_root = str(tiny_synthetic_root.parent)
    env = dict(os.environ, HANDOBJ_DATASETS=env_root, PYTHONWARNINGS="ignore")
    common = [sys.executable, tool, "--model", "a", CONFIG, "", "--model", "b", CONFIG, ""]
    done = subprocess.run(common + ["--dataset", "synthetic_eval", "--num-images", "1",
                                    "--output", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "comparison_000.png").is_file()
    missing = subprocess.run(common + ["--input", str(tmp_path / "absent.png"),
                                       "--output", str(tmp_path / "bad")],
                             env=env, capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 1 and "absent.png" in missing.stderr
