"""Pose metrics, vectorised numpy: functions take a batch of samples along the first axis.

Hands: joint / vertex errors (raw, root-relative, Procrustes-aligned, scale-translation-aligned),
PCK curves and their AUC, F-scores of meshes. Objects: ADD, ADD-S, their 0.1-diameter accuracy,
2D reprojection error and REP-5px, mean corner distance (FPHA style).

Units follow the inputs: 3D in metres (thresholds below are metres), 2D in pixels. Errors are
frame-independent, but both arguments of a function must be in the same frame and unit.
Alignments follow the HO3D / FreiHAND challenge's formulas (``ho3d_scorer`` reproduces its
scores with them).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.spatial import cKDTree

from ..geometry import project_points, transform_points

# PCK thresholds of the HO3D / FreiHAND challenges: 100 steps over 0-5 cm (metres).
PCK_THRESHOLDS = np.linspace(0.0, 0.05, 100)
# F-score distance thresholds of the challenges: 5 mm and 15 mm (metres).
FSCORE_THRESHOLDS = (0.005, 0.015)
# Threads for the per-sample KD-tree work of F-scores.
_MAX_THREADS = 8


def point_distances(pred, gt):
    """Euclidean distance of corresponding points: pred, gt (..., P, D) -> (..., P)."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)


def root_relative(points, root=0):
    """Points (..., P, 3) minus their point ``root`` (the wrist for hands)."""
    points = np.asarray(points, np.float64)
    return points - points[..., root : root + 1, :]


# ----------------------------------------------------------------------------------------------
# Alignment


def procrustes_transform(pred, gt):
    """Similarity transform that best maps ``pred`` onto ``gt`` (least squares), per sample.

    pred, gt (N, P, 3) -> scale (N,), R (N, 3, 3), t (N, 3) with
    ``gt ~ scale * pred @ R.T + t``. As in the challenges (``scipy.linalg.orthogonal_procrustes``
    on Frobenius-normalised, centred points), R is the best orthogonal matrix: a reflection is
    kept when it fits better, which only happens for predictions far from any rotated copy.
    (The challenge adds 1e-8 to both norms; guarding only zero norms changes its scores by
    less than 1e-6 cm and keeps an exact copy exactly aligned.) A prediction whose points all
    coincide maps onto the ground truth's centroid.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    pred_mean, gt_mean = pred.mean(1), gt.mean(1)
    pred_c, gt_c = pred - pred_mean[:, None], gt - gt_mean[:, None]
    pred_norm, gt_norm = _norm(pred_c), _norm(gt_c)
    cross = np.swapaxes(gt_c / gt_norm[:, None, None], 1, 2) @ (pred_c / pred_norm[:, None, None])
    u, singular, vt = np.linalg.svd(cross)
    R = u @ vt
    scale = singular.sum(1) * gt_norm / pred_norm
    t = gt_mean - scale[:, None] * np.einsum("nij,nj->ni", R, pred_mean)
    return scale, R, t


def _norm(centred):
    """Frobenius norm of each centred point set (N, P, 3), with 1 in place of 0."""
    norm = np.linalg.norm(centred, axis=(1, 2))
    return np.where(norm > 0, norm, 1.0)


def apply_similarity(points, scale, R, t):
    """``scale * points @ R.T + t`` for points (N, P, 3), scale (N,), R (N, 3, 3), t (N, 3)."""
    rotated = np.asarray(points, np.float64) @ np.swapaxes(R, -1, -2)
    return scale[:, None, None] * rotated + t[:, None]


def procrustes_align(pred, gt):
    """``pred`` (N, P, 3) moved onto ``gt`` (N, P, 3) by :func:`procrustes_transform`."""
    return apply_similarity(pred, *procrustes_transform(pred, gt))


def align_scale_translation(pred, gt, bone=(0, 4)):
    """Scale ``pred`` (N, J, 3) so that its ``bone`` has the length of ``gt``'s and move its
    first bone joint onto ``gt``'s (the challenges' "scale_trans" alignment).

    The default bone is wrist -> middle-finger knuckle in MANO / HO3D joint order (joint 9 in
    the manopth order). A prediction whose bone has zero length keeps its scale.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    start, end = bone
    pred_length = np.linalg.norm(pred[:, end] - pred[:, start], axis=-1)
    gt_length = np.linalg.norm(gt[:, end] - gt[:, start], axis=-1)
    scale = gt_length / np.where(pred_length > 0, pred_length, 1.0)
    scaled = pred * scale[:, None, None]
    return scaled - scaled[:, start : start + 1] + gt[:, start : start + 1]


# ----------------------------------------------------------------------------------------------
# Keypoint statistics


def pck_curves(distances, thresholds=PCK_THRESHOLDS):
    """Fraction of samples within each threshold (``distance <= threshold``), per keypoint.

    distances (N, K), thresholds (T,) ascending -> (T, K). NaN distances count as misses.
    """
    distances = np.asarray(distances, np.float64)
    thresholds = np.asarray(thresholds, np.float64)
    num, keypoints = distances.shape
    steps = len(thresholds)
    # First threshold index with distance <= threshold (``steps`` when there is none).
    first = np.searchsorted(thresholds, distances, side="left")
    bins = first + (steps + 1) * np.arange(keypoints)[None]
    counts = np.bincount(bins.ravel(), minlength=keypoints * (steps + 1))
    within = np.cumsum(counts.reshape(keypoints, steps + 1), axis=1)[:, :steps]
    return within.T / max(num, 1)


def area_under_curve(curve, thresholds=PCK_THRESHOLDS):
    """Trapezoid area under ``curve`` (T, ...) over ``thresholds`` (T,), divided by the
    threshold range, so a perfect curve scores 1."""
    curve, thresholds = np.asarray(curve, np.float64), np.asarray(thresholds, np.float64)
    widths = np.diff(thresholds).reshape((-1,) + (1,) * (curve.ndim - 1))
    area = ((curve[1:] + curve[:-1]) * 0.5 * widths).sum(0)
    return area / (thresholds[-1] - thresholds[0])


def keypoint_summary(distances, thresholds=PCK_THRESHOLDS):
    """The challenges' summary of per-keypoint distances (N, K), as a dict:

    ``mean`` (mean over keypoints of the per-keypoint mean distance), ``auc`` (mean over
    keypoints of the per-keypoint PCK AUC), ``pck`` (T,) (PCK averaged over keypoints),
    ``thresholds`` (T,).
    """
    distances = np.asarray(distances, np.float64)
    curves = pck_curves(distances, thresholds)
    return {
        "mean": float(distances.mean(0).mean()),
        "auc": float(area_under_curve(curves, thresholds).mean()),
        "pck": curves.mean(1),
        "thresholds": np.asarray(thresholds, np.float64),
    }


# ----------------------------------------------------------------------------------------------
# F-score of point sets


def nearest_distances(source, target, max_distance=np.inf):
    """Distance from each point of ``source`` (P, 3) to its nearest point of ``target``
    (Q, 3), via a KD-tree; distances beyond ``max_distance`` may come back as inf."""
    return cKDTree(target).query(source, distance_upper_bound=max_distance)[0]


def fscores(pred, gt, thresholds=FSCORE_THRESHOLDS):
    """F-scores of point sets: pred (N, P, 3), gt (N, Q, 3) (P and Q may differ), thresholds
    (T,) metres -> (fscore, precision, recall), each (N, T).

    precision: fraction of predicted points closer than the threshold to the ground truth;
    recall: fraction of ground-truth points closer than the threshold to the prediction
    (the HO3D script names the two the other way round; the F-score is the same). F is 0 when
    both are 0. Nearest neighbours come from KD-trees, never all-pairs matrices.
    """
    return fscores_of_predictions([pred], gt, thresholds)[0]


def fscores_of_predictions(preds, gt, thresholds=FSCORE_THRESHOLDS):
    """:func:`fscores` of several predictions (e.g. raw and aligned) of the same ground truth
    gt (N, Q, 3), which then builds its KD-trees once: a list of (fscore, precision, recall).
    Samples are spread over threads (the KD-tree code runs without the GIL)."""
    thresholds = np.asarray(thresholds, np.float64)
    num = len(gt)
    precision = np.zeros((len(preds), num, len(thresholds)))
    recall = np.zeros_like(precision)
    # Distances at or beyond the largest threshold never count: the trees prune them.
    bound = thresholds.max()

    def score_samples(samples):
        for i in samples:
            gt_tree = cKDTree(gt[i])
            for k, pred in enumerate(preds):
                to_gt = gt_tree.query(pred[i], distance_upper_bound=bound)[0]
                to_pred = nearest_distances(gt[i], pred[i], bound)
                precision[k, i] = (to_gt[:, None] < thresholds).mean(0)
                recall[k, i] = (to_pred[:, None] < thresholds).mean(0)

    workers = min(os.cpu_count() or 1, _MAX_THREADS)
    blocks = np.array_split(np.arange(num), max(1, min(num, 4 * workers)))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(score_samples, blocks))
    total = precision + recall
    fscore = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
    return [(fscore[k], precision[k], recall[k]) for k in range(len(preds))]


# ----------------------------------------------------------------------------------------------
# Objects


def add_distance(R_pred, t_pred, R_gt, t_gt, points):
    """ADD: mean distance between the model ``points`` (P, 3), or per-sample points
    (N, P, 3), posed by the prediction and by the ground truth. R (N, 3, 3), t (N, 3) -> (N,),
    in the unit of t and points."""
    points = np.asarray(points, np.float64)
    return point_distances(
        transform_points(points, np.asarray(R_pred), np.asarray(t_pred)),
        transform_points(points, np.asarray(R_gt), np.asarray(t_gt)),
    ).mean(-1)


def adds_distance(R_pred, t_pred, R_gt, t_gt, points):
    """ADD-S (symmetric objects): mean distance from each ground-truth-posed model point to the
    nearest prediction-posed model point (KD-tree). Shapes as in :func:`add_distance`."""
    points = np.asarray(points, np.float64)
    pred = transform_points(points, np.asarray(R_pred), np.asarray(t_pred))
    gt = transform_points(points, np.asarray(R_gt), np.asarray(t_gt))
    return np.array([nearest_distances(g, p).mean() for p, g in zip(pred, gt)])


def within_diameter(distances, diameters, fraction=0.1):
    """ADD-0.1D / ADD-S-0.1D success: ``distance < fraction * diameter``; (N,) bool. Infinite
    (failed) distances are misses."""
    return np.asarray(distances, np.float64) < fraction * np.asarray(diameters, np.float64)


def reprojection_error(R_pred, t_pred, R_gt, t_gt, points, K):
    """Mean 2D distance (pixels) between the model ``points`` (P, 3) projected with the
    predicted and with the ground-truth pose. R (N, 3, 3), t (N, 3), K (N, 3, 3) OpenCV
    intrinsics of the camera frame of the poses -> (N,)."""
    points, K = np.asarray(points, np.float64), np.asarray(K, np.float64)
    pred = project_points(transform_points(points, np.asarray(R_pred), np.asarray(t_pred)), K)
    gt = project_points(transform_points(points, np.asarray(R_gt), np.asarray(t_gt)), K)
    return point_distances(pred, gt).mean(-1)


def mean_corner_distance(R_pred, t_pred, R_gt, t_gt, corners):
    """FPHA-style object error: mean 3D distance of the bounding-box ``corners`` (C, 3) or
    (N, C, 3) (or control points) posed by prediction and ground truth (their ADD); (N,)."""
    return add_distance(R_pred, t_pred, R_gt, t_gt, corners)
