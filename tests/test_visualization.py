"""The demo's drawing of a prediction: the object's voted control points always, its projected
3D box only where its pose is valid (pixels checked against a hand projection); a ground-truth
hand mesh placed and drawn by the demo's code lands on the rendered hand."""

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from handobj_d2.data.synthetic import TRAIN_OBJECTS, SyntheticSceneGenerator
from handobj_d2.engine.predictor import root_translations
from handobj_d2.geometry import box_control_points, project_points
from handobj_d2.visualization import OBJECT_3D_BOX_COLOR, draw_hand_object, overlay_hand_mesh

K = np.array([[200.0, 0, 160], [0, 200.0, 120], [0, 0, 1]])
HALF = 0.05  # a 10 cm cube 1 m in front of the camera, axis-aligned
CUBE = box_control_points(np.array([[x, y, z] for x in (-HALF, HALF) for y in (-HALF, HALF)
                                    for z in (-HALF, HALF)]))  # fmt: skip
VOTES = np.array([[20.0 + 12 * (i % 7), 200.0 + 12 * (i // 7)] for i in range(21)])


def _prediction(pose_valid, has_object=True):
    pairs = Instances((240, 320))
    pairs.pred_boxes = Boxes(torch.tensor([[250.0, 10, 310, 40]]))
    pairs.scores = torch.tensor([0.9])
    pairs.pred_has_object = torch.tensor([has_object])
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


def test_a_hand_without_object_draws_no_object():
    image = np.zeros((240, 320, 3), np.uint8)
    out = draw_hand_object(image, _prediction(True, has_object=False), K, np.zeros((0, 3), int),
                           CUBE)  # fmt: skip
    for x, y in VOTES.astype(int):
        assert tuple(out[y, x]) == (0, 0, 0)
    assert not _colour_near(out, 160, 109)
    assert out[10:41, 250:311].any()  # the hand box and skeleton are drawn


def test_ground_truth_hand_mesh_drawn_by_the_demo_lands_on_the_hand():
    """A synthetic frame's ground-truth hand, given to the demo's drawing as a prediction would
    be (root-relative joints and vertices, 2D joints, the wrist placed by the predictor's
    root_translations): the drawn mesh covers the hand's visible pixels and hardly spills
    beyond the hand and the object that hides part of it."""
    generator = SyntheticSceneGenerator("default", (256, 192))
    rng = np.random.default_rng(0)
    frame = generator.sample_frame(rng, generator.sample_setup(rng, TRAIN_OBJECTS))
    wrist = frame.hand_joints[0]
    pairs = Instances((192, 256))
    pairs.pred_joints2d = torch.as_tensor(project_points(frame.hand_joints, frame.camera_K))[None]
    pairs.pred_joints3d = torch.as_tensor(frame.hand_joints - wrist)[None]
    root = root_translations(pairs, frame.camera_K)[0].numpy()
    np.testing.assert_allclose(root, wrist, atol=1e-5)

    black = np.zeros((192, 256, 3), np.uint8)
    drawn = overlay_hand_mesh(black, frame.hand_vertices - wrist + root, generator.hand_faces,
                              frame.camera_K, alpha=1.0).any(-1)  # fmt: skip
    hand = frame.hand_mask
    assert hand.sum() > 300
    assert (drawn & hand).sum() >= 0.97 * hand.sum()
    assert (drawn & ~hand & ~frame.object_mask).sum() <= 0.03 * drawn.sum()
