"""The demo's drawing of a prediction: the object's voted control points always, its projected
3D box only where its pose is valid (pixels checked against a hand projection)."""

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from handobj_d2.geometry import box_control_points
from handobj_d2.visualization import OBJECT_3D_BOX_COLOR, draw_hand_object

K = np.array([[200.0, 0, 160], [0, 200.0, 120], [0, 0, 1]])
HALF = 0.05  # a 10 cm cube 1 m in front of the camera, axis-aligned
CUBE = box_control_points(np.array([[x, y, z] for x in (-HALF, HALF) for y in (-HALF, HALF)
                                    for z in (-HALF, HALF)]))  # fmt: skip
VOTES = np.array([[20.0 + 12 * (i % 7), 200.0 + 12 * (i // 7)] for i in range(21)])


def _prediction(pose_valid):
    pairs = Instances((240, 320))
    pairs.pred_hand_boxes = Boxes(torch.tensor([[250.0, 10, 310, 40]]))
    pairs.hand_scores = torch.tensor([0.9])
    pairs.pred_object_boxes = Boxes(torch.tensor([[140.0, 95, 180, 135]]))
    pairs.object_scores = torch.tensor([0.8])
    pairs.pred_joints2d = torch.full((1, 21, 2), 280.0)
    pairs.pred_control_points2d = torch.as_tensor(VOTES, dtype=torch.float32)[None]
    pairs.pred_object_R = torch.eye(3)[None]
    pairs.pred_object_t = torch.tensor([[0.0, 0.0, 1.0]])
    pairs.pred_object_pose_valid = torch.tensor([pose_valid])
    return pairs


def _colour_near(image, x, y):
    """Whether a pixel within 1 px of (x, y) has the 3D box colour (anti-aliased lines)."""
    patch = image[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - OBJECT_3D_BOX_COLOR).max(1) < 40).any())


@pytest.mark.parametrize("pose_valid", [True, False])
def test_votes_always_drawn_and_3d_box_only_for_a_valid_pose(pose_valid):
    image = np.zeros((240, 320, 3), np.uint8)
    out = draw_hand_object(image, _prediction(pose_valid), K, np.zeros((0, 3), int), CUBE)
    for x, y in VOTES.astype(int):
        assert tuple(out[y, x]) == OBJECT_3D_BOX_COLOR
    # The near face's top edge (z = 0.95 m) projects to y = 120 - 200 * 0.05 / 0.95 = 109.47,
    # x from 149.47 to 170.53; its midpoint is (160, 109.47). The right edges of the near and
    # far faces run at x = 160 + 200 * 0.05 / 0.95 = 170.53 and 160 + 200 * 0.05 / 1.05 =
    # 169.52, both through y = 120.
    assert _colour_near(out, 160, 109) == pose_valid
    assert _colour_near(out, 170, 120) == pose_valid
    # Nothing of the box where no edge projects (the cube's centre).
    assert not _colour_near(out, 160, 120)
