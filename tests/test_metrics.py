"""Metrics against closed forms: each expected number is derived by hand in the test."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handobj_d2.evaluation import metrics


def _points(num=21, seed=0, spread=0.04):
    """Random 3D points around 0.5 m in front of a camera (metres)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, spread, (num, 3)) + np.array([0.0, 0.0, 0.5])


def test_identical_prediction_scores_perfectly():
    gt = np.stack([_points(seed=s) for s in range(4)])
    distances = metrics.point_distances(gt, gt)
    summary = metrics.keypoint_summary(distances)
    assert summary["mean"] == 0.0
    assert summary["auc"] == 1.0
    assert np.all(summary["pck"] == 1.0)
    aligned = metrics.procrustes_align(gt, gt)
    assert np.abs(aligned - gt).max() < 1e-12
    fscore, precision, recall = metrics.fscores(gt, gt)
    assert np.all(fscore == 1.0) and np.all(precision == 1.0) and np.all(recall == 1.0)


def test_procrustes_removes_a_global_similarity_transform():
    gt = np.stack([_points(seed=s) for s in range(3)])
    rotations = Rotation.from_euler("xyz", [[30, -20, 75], [170, 5, -60], [0, 90, 0]], True)
    scales = np.array([0.5, 1.7, 3.0])
    shifts = np.array([[0.1, -0.2, 0.3], [0.0, 0.0, -1.0], [0.02, 0.5, 0.0]])
    pred = np.stack(
        [s * g @ r.as_matrix().T + t for g, r, s, t in zip(gt, rotations, scales, shifts)]
    )
    # Raw error of each point, written out for one point at a time.
    expected_raw = np.array(
        [
            [np.sqrt(np.sum((s * r.apply(p) + t - p) ** 2)) for p in g]
            for g, r, s, t in zip(gt, rotations, scales, shifts)
        ]
    )
    assert np.allclose(metrics.point_distances(pred, gt), expected_raw)
    assert expected_raw.mean() > 0.1
    aligned = metrics.procrustes_align(pred, gt)
    assert np.abs(metrics.point_distances(aligned, gt)).max() < 1e-9
    scale, R, t = metrics.procrustes_transform(pred, gt)
    # pred -> gt inverts the applied transform: scale 1/s, rotation r^-1.
    assert np.allclose(scale, 1 / scales)
    assert np.allclose(R, np.stack([r.inv().as_matrix() for r in rotations]), atol=1e-9)


def test_constant_offset_gives_mpjpe_d_and_a_pck_step_at_d():
    gt = np.stack([_points(seed=s) for s in range(5)])
    d = 0.0123
    direction = np.array([2.0, -1.0, 2.0]) / 3.0
    distances = metrics.point_distances(gt + d * direction, gt)
    summary = metrics.keypoint_summary(distances)
    assert summary["mean"] == pytest.approx(d, abs=1e-12)
    thresholds = metrics.PCK_THRESHOLDS
    assert np.all(summary["pck"][thresholds < d] == 0.0)
    assert np.all(summary["pck"][thresholds >= d] == 1.0)
    # Trapezoids: full width above the first threshold k >= d, half of the interval before it.
    k = int(np.argmax(thresholds >= d))
    area = (thresholds[-1] - thresholds[k]) + 0.5 * (thresholds[k] - thresholds[k - 1])
    assert summary["auc"] == pytest.approx(area / 0.05, abs=1e-12)
    # Root-relative errors cancel the offset.
    assert (
        np.abs(metrics.root_relative(gt + d * direction) - metrics.root_relative(gt)).max() < 1e-12
    )


def test_pck_counts_per_keypoint_and_threshold():
    # Two keypoints over four samples, thresholds 0, 1, 2, 3.
    distances = np.array([[0.0, 3.5], [1.0, 0.5], [1.5, 2.0], [4.0, np.nan]])
    pck = metrics.pck_curves(distances, np.array([0.0, 1.0, 2.0, 3.0]))
    expected = np.array([[1, 0], [2, 1], [3, 2], [3, 2]]) / 4
    assert np.array_equal(pck, expected)


def test_scale_translation_alignment_matches_bone_and_root():
    gt = np.stack([_points(seed=s) for s in range(3)])
    pred = 2.5 * metrics.root_relative(gt) + np.array([1.0, 2.0, 3.0])
    aligned = metrics.align_scale_translation(pred, gt, bone=(0, 4))
    assert np.abs(aligned - gt).max() < 1e-12
    # A degenerate prediction (zero-length bone) keeps its own scale.
    flat = np.zeros_like(gt)
    assert np.allclose(metrics.align_scale_translation(flat, gt), gt[:, :1].repeat(21, 1))


def test_fscore_of_hand_counted_point_sets():
    gt = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0]])
    # Nearest ground-truth distances: 2 mm, 10 mm, 20 mm (last one 0.32 -> 0.3).
    pred = np.array([[0.002, 0, 0], [0.1, 0.01, 0], [0.32, 0, 0]])
    # Ground truth -> prediction: 2 mm, 10 mm, about 100 mm, 20 mm.
    fscore, precision, recall = metrics.fscores(pred[None], gt[None], (0.005, 0.015))
    assert np.allclose(precision[0], [1 / 3, 2 / 3])
    assert np.allclose(recall[0], [1 / 4, 2 / 4])
    f5 = 2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4)
    f15 = 2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2)
    assert np.allclose(fscore[0], [f5, f15])
    # Nothing within the threshold: F is 0, not NaN.
    far = metrics.fscores(pred[None] + 1.0, gt[None])[0]
    assert np.array_equal(far, [[0.0, 0.0]])


def _box_points():
    """Corners of a 10 x 6 x 4 cm box centred at the origin (metres)."""
    return np.array(
        [[x, y, z] for x in (-0.05, 0.05) for y in (-0.03, 0.03) for z in (-0.02, 0.02)]
    )


def test_add_of_known_rigid_offsets():
    points = _box_points()
    R = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()[None]
    t = np.array([[0.05, -0.02, 0.6]])
    delta = np.array([0.003, 0.004, 0.0])  # 5 mm
    assert metrics.add_distance(R, t + delta, R, t, points)[0] == pytest.approx(0.005)
    # A rotation by theta about the object's z axis moves each point by 2 r sin(theta / 2),
    # r its distance to the axis.
    theta = np.deg2rad(20)
    Rz = Rotation.from_euler("z", theta).as_matrix()
    radius = np.linalg.norm(points[:, :2], axis=1)
    expected = np.mean(2 * radius * np.sin(theta / 2))
    assert metrics.add_distance(R @ Rz, t, R, t, points)[0] == pytest.approx(expected)
    assert metrics.mean_corner_distance(R @ Rz, t, R, t, points)[0] == pytest.approx(expected)
    diameter = 2 * np.linalg.norm([0.05, 0.03, 0.02])
    hits = metrics.within_diameter([0.005, 0.1 * diameter + 1e-6, np.inf], [diameter] * 3)
    assert hits.tolist() == [True, False, False]


def test_adds_is_invariant_to_a_symmetry_of_the_model():
    points = _box_points()  # symmetric under a half turn about z
    R = Rotation.from_euler("xyz", [40, -10, 5], degrees=True).as_matrix()[None]
    t = np.array([[0.0, 0.0, 0.5]])
    flip = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    assert metrics.adds_distance(R @ flip, t, R, t, points)[0] < 1e-12
    # ADD sees the flip: every corner moves by twice its distance to the z axis.
    expected = np.mean(2 * np.linalg.norm(points[:, :2], axis=1))
    assert metrics.add_distance(R @ flip, t, R, t, points)[0] == pytest.approx(expected)
    # A translation is not a symmetry: ADD-S of a shift along x (1 mm, below the box's corner
    # spacing) is the shift.
    shifted = metrics.adds_distance(R, t + R[0] @ [0.001, 0, 0], R, t, points)[0]
    assert shifted == pytest.approx(0.001)


def test_reprojection_error_of_a_lateral_shift():
    points = _box_points()
    K = np.array([[[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]]])
    R = np.eye(3)[None]
    t = np.array([[0.0, 0.0, 0.6]])
    # An object with all points at depths z, shifted by dx along x, moves by f dx / z pixels.
    delta = 0.002
    expected = np.mean(600.0 * delta / (0.6 + points[:, 2]))
    error = metrics.reprojection_error(R, t + [delta, 0, 0], R, t, points, K)
    assert error[0] == pytest.approx(expected)


def test_seed_statistics_and_rank_correlation():
    from handobj_d2.evaluation.statistics import mean_std, paired_difference, rank_correlation

    # 1, 2, 6: mean 3, sample variance (4 + 1 + 9) / 2 = 7
    assert mean_std([1.0, 2.0, 6.0]) == {"mean": 3.0, "std": pytest.approx(7**0.5), "n": 3}
    assert mean_std([4.0]) == {"mean": 4.0, "std": 0.0, "n": 1}
    one = paired_difference([2.0], [1.0])
    assert one["mean"] == 1.0 and one["n"] == 1 and np.isnan(one["se"])
    # ranks 1 2 3 4 against 2 1 4 3: sum of squared rank differences 4, rho = 1 - 6 * 4 / 60
    assert rank_correlation([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(0.6)
    # unscored (NaN) frames are left out; fewer than min_count scored: no correlation
    assert rank_correlation([np.nan, 1.0, 2.0, 3.0], [9.0, 1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert rank_correlation([np.nan, np.nan, 2.0, 3.0], [9.0, 1.0, 2.0, 3.0]) is None
