"""HandObjectRCNNWithTTA: Detectron2's test-time augmentation of the detector, the pose heads
once on the input."""

import numpy as np
import pytest
import torch
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import DatasetMapperTTA, build_model
from model_inputs import FIXTURE_MANO, make_sample

from handobj_d2.engine import setup_cfg
from handobj_d2.mano import HandLayer
from handobj_d2.modeling import HandObjectRCNNWithTTA


def _detecting_model(*opts):
    cfg = setup_cfg(
        "configs/synthetic/handobj_tiny.yaml",
        ["MODEL.MANO.MODEL_PATH", FIXTURE_MANO, "MODEL.HANDOBJ.INFERENCE_BOXES", "detected",
         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *opts],
    )  # fmt: skip
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def test_detectron2_tta_with_one_unchanged_copy_gives_the_plain_prediction():
    """One augmented copy of the input's own size and no flip: the merged detections are the
    model's own, so the pair and its pose are those of a plain forward pass."""
    cfg, model = _detecting_model("TEST.AUG.MIN_SIZES", "(96,)", "TEST.AUG.FLIP", "False")
    sample = make_sample(HandLayer(FIXTURE_MANO), np.random.default_rng(1), 96, 96, "tta")
    sample.pop("hand_object")
    with torch.no_grad():
        plain = model.inference([sample])[0]["instances"]
        (out,) = HandObjectRCNNWithTTA(cfg, model)([sample])
    assert len(plain) == 1
    pair = out["instances"]
    torch.testing.assert_close(pair.pred_boxes.tensor, plain.pred_boxes.tensor)
    torch.testing.assert_close(pair.pred_object_boxes.tensor, plain.pred_object_boxes.tensor)
    torch.testing.assert_close(pair.pred_joints2d, plain.pred_joints2d)
    torch.testing.assert_close(pair.pred_joints3d, plain.pred_joints3d)


def test_detectron2_tta_maps_resized_and_flipped_copies_back_to_the_input():
    """Copies at twice the size and mirrored: a box of a copy is mapped back by halving and
    mirroring (x -> 96 - x), so every merged detection lies inside the 96 x 96 input, and the
    pair's boxes are among the copies' detections mapped back by hand."""
    cfg, model = _detecting_model("TEST.AUG.MIN_SIZES", "(192,)", "TEST.AUG.FLIP", "True")
    sample = make_sample(HandLayer(FIXTURE_MANO), np.random.default_rng(1), 96, 96, "tta")
    sample.pop("hand_object")
    with torch.no_grad():
        (out,) = HandObjectRCNNWithTTA(cfg, model)([sample])
        copies = DatasetMapperTTA(cfg)(sample)
        found = []
        for copy in copies:  # Detectron2's copies: 192 x 192, then the same mirrored
            assert copy["image"].shape[1:] == (192, 192)
            flipped = any(isinstance(t, HFlipTransform) for t in copy.pop("transforms"))
            with _pose_off(model):
                (detections,) = model.inference([copy], do_postprocess=False)
            boxes = detections.pred_boxes.tensor / 2
            if flipped:
                boxes = torch.stack(
                    [96 - boxes[:, 2], boxes[:, 1], 96 - boxes[:, 0], boxes[:, 3]], 1
                )
            found.append(boxes)
    assert len(copies) == 2
    found = torch.cat(found)
    pair = out["instances"]
    assert len(pair) == 1 and pair.pred_has_object.tolist() == [True]
    for box in (pair.pred_boxes.tensor[0], pair.pred_object_boxes.tensor[0]):
        assert (box >= 0).all() and (box <= 96).all()
        assert (found - box).abs().amax(1).min() < 0.5


class _pose_off:
    def __init__(self, model):
        self.heads = model.roi_heads

    def __enter__(self):
        self.heads.pose_on = False

    def __exit__(self, *exc):
        self.heads.pose_on = True


def test_detectron2_tta_runs_the_pose_branch_once_per_image():
    """Four copies (two sizes, flipped and not) through the detector with the pose branch off;
    the pose branch (hand decoder, object decoder, PnP) runs once, on the merged detections."""
    cfg, model = _detecting_model("TEST.AUG.MIN_SIZES", "(96, 144)", "TEST.AUG.FLIP", "True")
    sample = make_sample(HandLayer(FIXTURE_MANO), np.random.default_rng(1), 96, 96, "tta")
    sample.pop("hand_object")
    calls = {"hand": 0, "object": 0, "box": 0, "pnp": 0}
    heads = model.roi_heads
    for name, module in (("hand", heads.hand_head), ("object", heads.object_head),
                         ("box", heads.box_predictor)):  # fmt: skip
        module.register_forward_hook(lambda *_, name=name: calls.update({name: calls[name] + 1}))
    postprocess = model.postprocess_pairs

    def counted(*args):
        calls["pnp"] += 1
        return postprocess(*args)

    model.postprocess_pairs = counted
    with torch.no_grad():
        (out,) = HandObjectRCNNWithTTA(cfg, model, batch_size=1)([sample])
    assert calls == {"hand": 1, "object": 1, "box": 4, "pnp": 1}
    assert len(out["instances"]) == 1 and out["instances"].has("pred_joints3d")
    assert heads.pose_on


def test_detectron2_tta_needs_the_detector():
    cfg, model = _detecting_model("MODEL.HANDOBJ.INFERENCE_BOXES", "given")
    with pytest.raises(ValueError, match="INFERENCE_BOXES 'detected'"):
        HandObjectRCNNWithTTA(cfg, model)
