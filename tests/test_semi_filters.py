"""Pseudo-label filters on crafted sequences with known answers."""

import numpy as np
import pytest
from detectron2.config import get_cfg
from hand_skeletons import flat_skeleton, rotating_hand
from scipy.spatial.transform import Rotation

from handobj_d2.config import add_handobj_config
from handobj_d2.semi.filters import (
    apply_filters,
    box_gap,
    residual_2d3d,
    shape_deviation,
    temporal_distance,
)


def _video(count=12, seed=0):
    """A hand rotating slowly (2 degrees per frame) 0.5 m in front of a camera."""
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    rng = np.random.default_rng(seed)
    joints3d, joints2d, boxes = [], [], []
    for t in range(count):
        rel = rotating_hand(t)
        cam = rel + np.array([0.0, 0.0, 0.5])
        uv = cam @ K.T
        uv = uv[:, :2] / uv[:, 2:]
        joints3d.append(rel)
        joints2d.append(uv + rng.normal(0, 0.5, uv.shape))
        boxes.append(np.concatenate([uv.min(0), uv.max(0)]))
    hand_box = np.array(boxes)
    return {
        "frame_index": np.arange(count),
        "joints3d": np.array(joints3d),
        "joints2d": np.array(joints2d),
        "hand_box": hand_box,
        "object_box": hand_box + np.array([40.0, 0, 40.0, 0]),  # overlapping the hand box
        "hand_score": np.full(count, 0.9),
        "object_score": np.full(count, 0.8),
        "mano_shape": rng.normal(0, 0.1, (count, 10)),
    }


@pytest.fixture
def cfg():
    return add_handobj_config(get_cfg())


def test_a_jump_in_3d_pose_is_rejected_and_its_smooth_neighbours_kept(cfg):
    video = _video()
    video["joints3d"][5] = (
        video["joints3d"][5] @ Rotation.from_euler("x", 60, degrees=True).as_matrix().T
    )
    columns, kept = apply_filters(video, cfg, ["temporal"])
    assert not kept[5]
    assert kept[np.arange(12) != 5].all()
    # Smooth frames differ from their neighbourhood by about a 2-degree rotation only: the
    # fingertips (up to 0.155 m from the wrist) move at most 0.155 * 2 * pi / 180 * 2 = 1.1 cm.
    assert np.nanmax(np.delete(columns["temporal_distance"], 5)) < 0.011


def test_temporal_neighbours_respect_gaps_in_frame_indices():
    joints = np.zeros((5, 21, 3))
    joints[3:, 1:] = 0.01  # frames 10 and 11 share a pose that differs from frames 0-2
    distance = temporal_distance([0, 1, 2, 10, 11], joints, window=2)
    np.testing.assert_allclose(distance[:3], 0.0)
    np.testing.assert_allclose(distance[3:], 0.0)  # 10 and 11 only see each other
    lonely = temporal_distance([0, 5], np.zeros((2, 21, 3)), window=2)
    assert np.isnan(lonely).all()
    with pytest.raises(ValueError, match="strictly increasing"):
        temporal_distance([3, 2], np.zeros((2, 21, 3)), window=2)


def test_2d_joints_disagreeing_with_3d_joints_are_rejected(cfg):
    video = _video()
    video["joints2d"][3] = video["joints2d"][3][np.random.default_rng(1).permutation(21)]
    centre = video["joints2d"][7].mean(0)
    video["joints2d"][7] = 2 * centre - video["joints2d"][7]  # point-mirrored 2D hand
    columns, kept = apply_filters(video, cfg, ["consistency_2d3d"])
    assert not kept[3] and not kept[7]
    assert kept[[0, 1, 2, 4, 5, 6, 8, 9, 10, 11]].all()


def test_residual_2d3d_is_zero_for_an_exact_weak_perspective_projection():
    joints3d = flat_skeleton()[None]
    joints2d = 1200.0 * joints3d[..., :2] + np.array([100.0, 50.0])
    box = np.array([[0.0, 0.0, 200.0, 100.0]])
    np.testing.assert_allclose(residual_2d3d(joints2d, joints3d, box), 0.0, atol=1e-9)
    # Shift one joint by 20 px: with the fit shared by 21 joints the mean residual is between
    # 20/21 (others absorb nothing) and 20 px; relative to the 200 px box side.
    moved = joints2d.copy()
    moved[0, 8] += [20.0, 0.0]
    residual = residual_2d3d(moved, joints3d, box)[0]
    assert 20 / 21 / 200 < residual < 20 / 200


def test_hand_away_from_object_is_rejected_by_the_interaction_filter(cfg):
    video = _video()
    width = video["hand_box"][4, 2] - video["hand_box"][4, 0]
    video["object_box"][4] = video["hand_box"][4] + np.array([3 * width, 0, 3 * width, 0])
    columns, kept = apply_filters(video, cfg, ["interaction"])
    assert not kept[4] and kept[np.arange(12) != 4].all()
    # By hand: hand [0,0,30,40] (diagonal 50), object 30 px to the right -> gap 0.6.
    gap = box_gap(np.array([[0.0, 0, 30, 40]]), np.array([[60.0, 10, 90, 30]]))
    np.testing.assert_allclose(gap, [0.6])
    np.testing.assert_allclose(
        box_gap(np.array([[0.0, 0, 30, 40]]), np.array([[20.0, 30, 90, 90]])), [0.0]
    )


def test_shape_outlier_and_low_scores_are_rejected_and_all_scores_recorded(cfg):
    video = _video()
    video["mano_shape"][2] += 3.0
    video["hand_score"][9] = 0.2
    columns, kept = apply_filters(video, cfg, cfg.SEMI.FILTER.NAMES)
    assert not kept[2] and not kept[9]
    assert kept.sum() == 10
    assert set(columns) == {
        "hand_score", "object_score", "residual_2d3d", "temporal_distance", "shape_deviation", "box_gap",
        "pass_detection", "pass_consistency_2d3d", "pass_temporal", "pass_shape", "pass_interaction",
    }  # fmt: skip
    np.testing.assert_allclose(
        shape_deviation(np.array([[0.0] * 10, [1.0] * 10, [4.0] * 10])),
        [np.sqrt(10), 0, 3 * np.sqrt(10)],
    )


def test_no_filters_keeps_everything(cfg):
    video = _video()
    video["hand_score"][:] = 0.0
    columns, kept = apply_filters(video, cfg, [])
    assert kept.all() and columns == {}
