"""TransformAveraging (data distillation): the averaged hand predictions of views of one frame,
against the model's plain predictions on each view."""

import numpy as np
import torch
from detectron2.modeling import build_model
from model_inputs import FIXTURE_MANO, make_sample

from handobj_d2.engine import setup_cfg
from handobj_d2.mano import HandLayer
from handobj_d2.modeling import hand_object_detections
from handobj_d2.semi.transform_averaging import TransformAveraging


def test_views_are_unrolled_and_averaged():
    cfg = setup_cfg("configs/synthetic/handobj_tiny.yaml", ["MODEL.MANO.MODEL_PATH", FIXTURE_MANO])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    sample = make_sample(HandLayer(FIXTURE_MANO), np.random.default_rng(0), 96, 96, "tta")
    pair = sample.pop("hand_object")
    sample["hand_box"] = pair.gt_hand_boxes.tensor[0]
    sample["object_box"] = pair.gt_object_boxes.tensor[0]
    shifted = {**sample, "object_box": sample["object_box"] + torch.tensor([-4.0, 0, 0, 0])}
    roll = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about the optical axis
    with torch.no_grad():
        plain = [
            model.inference(
                [x], [hand_object_detections((96, 96), x["hand_box"], x["object_box"])]
            )[0]["instances"]
            for x in (sample, shifted)
        ]
    (averaged,) = TransformAveraging(model, batch_size=1)([[(sample, np.eye(3)), (shifted, roll)]])
    # View 2's joints X' are X = Rz^T X' in the frame's camera: as rows, X' @ Rz.
    joints3d = [p.pred_joints3d[0].double().numpy() for p in plain]
    expected = (joints3d[0] + joints3d[1] @ roll) / 2
    np.testing.assert_allclose(averaged["pred_joints3d"][0].numpy(), expected, atol=1e-6)
    expected2d = (plain[0].pred_joints2d + plain[1].pred_joints2d) / 2
    torch.testing.assert_close(averaged["pred_joints2d"], expected2d)
    expected_shape = (plain[0].pred_mano_shape + plain[1].pred_mano_shape) / 2
    torch.testing.assert_close(averaged["pred_mano_shape"], expected_shape)
