"""Voting + PnP-RANSAC recovers known object poses from synthetic voting fields."""

import cv2
import numpy as np
import pytest
import torch

from handobj_d2.geometry import box_control_points
from handobj_d2.modeling.pnp import control_point_estimates, solve_pnp, vote_control_points

K = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
RES = 32


def _pose(rng):
    axis = rng.normal(size=3)
    R = cv2.Rodrigues(axis / np.linalg.norm(axis) * rng.uniform(0.1, 3.0))[0]
    t = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(0.3, 0.9)])
    return R, t


def _field(rng, n):
    """Exact voting fields: every cell predicts every control point's true position."""
    points3d, poses, boxes, coords = [], [], [], []
    for _ in range(n):
        extent = rng.uniform(0.02, 0.08, 3)
        corners = np.array(np.meshgrid(*[[-e, e] for e in extent])).reshape(3, -1).T
        points = box_control_points(corners)
        R, t = _pose(rng)
        cam = points @ R.T + t
        pixels = cam[:, :2] / cam[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        box = np.concatenate([pixels.min(0) - 3, pixels.max(0) + 3])
        normalised = (pixels - box[:2]) / (box[2:] - box[:2])
        points3d.append(points)
        poses.append((R, t))
        boxes.append(box)
        coords.append(np.broadcast_to(normalised[:, None, None], (21, RES, RES, 2)))
    return (
        torch.tensor(np.array(coords), dtype=torch.float64),
        torch.tensor(np.array(boxes), dtype=torch.float64),
        np.array(points3d),
        poses,
    )


def _rotation_error_deg(R, R_true):
    return np.degrees(np.arccos(np.clip((np.trace(R.T @ R_true) - 1) / 2, -1, 1)))


def _solve(votes, valid, points3d, min_points=6):
    return solve_pnp(
        votes, valid, points3d, np.broadcast_to(K, (len(points3d), 3, 3)), min_points, 8.0, 100
    )


def test_recovers_known_poses_from_exact_votes():
    rng = np.random.default_rng(0)
    coords, boxes, points3d, poses = _field(rng, 8)
    confidence = torch.tensor(rng.uniform(0, 1, (8, 21, RES, RES)))
    votes, vote_conf, valid = vote_control_points(coords, confidence, boxes, 10, 0.5)
    assert votes.shape == (8, 21, 10, 2) and valid.all()
    R, t, ok = _solve(votes, valid, points3d)
    assert ok.all()
    for i, (R_true, t_true) in enumerate(poses):
        assert np.abs(t[i] - t_true).max() < 1e-3  # 1 mm
        assert _rotation_error_deg(R[i], R_true) < 0.1
        # The control-point estimates are the true projections.
        cam = points3d[i] @ R_true.T + t_true
        pixels = cam[:, :2] / cam[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        points, _ = control_point_estimates(
            votes[i : i + 1], vote_conf[i : i + 1], valid[i : i + 1]
        )
        np.testing.assert_allclose(points[0].numpy(), pixels, atol=1e-6)


def test_ransac_rejects_outlier_votes():
    rng = np.random.default_rng(1)
    coords, boxes, points3d, poses = _field(rng, 4)
    coords = coords.clone()
    wrong = torch.tensor(rng.uniform(size=coords.shape[:-1]) < 0.3)
    coords[wrong] = torch.tensor(rng.uniform(0, 1, (int(wrong.sum()), 2)))
    confidence = torch.tensor(rng.uniform(0.6, 1, (4, 21, RES, RES)))
    votes, _, valid = vote_control_points(coords, confidence, boxes, 10, 0.5)
    R, t, ok = _solve(votes, valid, points3d)
    assert ok.all()
    # Wrong votes that land within the 8-pixel inlier threshold still pull a little.
    for i, (R_true, t_true) in enumerate(poses):
        assert np.abs(t[i] - t_true).max() < 5e-3
        assert _rotation_error_deg(R[i], R_true) < 0.5


def test_votes_are_the_most_confident_cells_in_pixels():
    r = 4
    coords = torch.zeros(1, 2, r, r, 2)
    coords[..., 0] = torch.arange(r * r, dtype=torch.float32).view(r, r) / 16  # cell id / 16
    coords[..., 1] = 0.5
    confidence = torch.full((1, 2, r, r), 0.1)
    confidence[0, 0, 1, 2] = 0.9  # cell 6
    confidence[0, 0, 3, 0] = 0.7  # cell 12
    confidence[0, 0, 0, 1] = 0.3  # cell 1, below the threshold
    confidence[0, 1, 2, 2] = 0.8  # cell 10
    box = torch.tensor([[10.0, 20.0, 42.0, 36.0]])  # 32 x 16 pixels
    votes, vote_conf, valid = vote_control_points(coords, confidence, box, 3, 0.5)
    np.testing.assert_allclose(vote_conf[0, 0], [0.9, 0.7, 0.3])
    assert valid[0, 0].tolist() == [True, True, False]
    assert valid[0, 1].tolist() == [True, False, False]
    np.testing.assert_allclose(votes[0, 0, :, 0], [10 + 32 * 6 / 16, 10 + 32 * 12 / 16, 10 + 2])
    np.testing.assert_allclose(votes[0, 0, :, 1], [28.0, 28.0, 28.0])
    np.testing.assert_allclose(votes[0, 1, 0], [10 + 32 * 10 / 16, 28.0])
    points, conf = control_point_estimates(votes, vote_conf, valid)
    # Confidence-weighted mean of the two valid votes: (0.9 * 22 + 0.7 * 34) / 1.6.
    np.testing.assert_allclose(points[0, 0], [(0.9 * 22 + 0.7 * 34) / 1.6, 28.0], rtol=1e-6)
    np.testing.assert_allclose(conf[0, 0], (0.9 + 0.7 + 0.3) / 3, rtol=1e-6)


def test_best_vote_when_no_vote_is_confident():
    votes = torch.tensor([[[[1.0, 2.0], [5.0, 6.0]]]])
    vote_conf = torch.tensor([[[0.4, 0.2]]])
    points, _ = control_point_estimates(votes, vote_conf, vote_conf > 0.5)
    np.testing.assert_allclose(points[0, 0], [1.0, 2.0])


def test_fewer_than_min_points_is_a_failed_pose():
    rng = np.random.default_rng(2)
    coords, boxes, points3d, _ = _field(rng, 2)
    confidence = torch.full((2, 21, RES, RES), 0.2, dtype=torch.float64)
    # Object 0: five confident cells in all; object 1: six.
    for point in range(5):
        confidence[0, point, 0, point] = 0.9
    for point in range(6):
        confidence[1, point, 0, point] = 0.9
    votes, _, valid = vote_control_points(coords, confidence, boxes, 10, 0.5)
    assert valid[0].sum() == 5 and valid[1].sum() == 6
    R, t, ok = _solve(votes, valid, points3d, min_points=6)
    assert ok.tolist() == [False, True]
    np.testing.assert_array_equal(R[0], np.eye(3))
    np.testing.assert_array_equal(t[0], np.zeros(3))


def test_min_points_below_four_is_rejected():
    with pytest.raises(ValueError, match="MIN_PNP_POINTS"):
        solve_pnp(
            np.zeros((1, 21, 10, 2)),
            np.ones((1, 21, 10), bool),
            np.zeros((1, 21, 3)),
            K[None],
            3,
            8.0,
            100,
        )
