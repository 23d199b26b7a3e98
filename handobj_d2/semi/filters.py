"""Spatial-temporal consistency filters that select pseudo-labels (the paper's core).

Every filter takes one video's teacher predictions and returns per-frame scores and a verdict.
A video's predictions are a dict of numpy arrays over its T predicted frames:

    frame_index (T,) int      position in the video (frames without a hand are simply absent)
    hand_box, object_box (T, 4) pixels [x1, y1, x2, y2];  hand_score, object_score (T,)
    joints2d (T, 21, 2) pixels, from the heatmaps
    joints3d (T, 21, 3) metres, root-relative (wrist at 0), OpenCV camera frame
    mano_shape (T, 10)

Filters are registered in ``PSEUDO_LABEL_FILTER_REGISTRY`` by name; ``SEMI.FILTER.NAMES`` lists
those applied and ``SEMI.FILTER.*`` holds every threshold. A frame is kept when it passes all of
them; a score that cannot be computed (NaN, e.g. no temporal neighbour) fails its filter.
"""

import numpy as np
from detectron2.utils.registry import Registry

PSEUDO_LABEL_FILTER_REGISTRY = Registry("PSEUDO_LABEL_FILTER")
PSEUDO_LABEL_FILTER_REGISTRY.__doc__ = """
Pseudo-label filters: ``fn(predictions, cfg) -> (scores, keep)`` where ``scores`` maps column
names to (T,) arrays and ``keep`` is a (T,) bool array.
"""


def residual_2d3d(joints2d, joints3d, hand_box):
    """Disagreement between heatmap 2D joints and the 3D joints, per frame.

    Fits, per frame, the least-squares scale s and translation t with s * X[:, :2] + t ~ p
    (weak perspective; X root-relative 3D joints, p 2D joints) and returns the mean joint
    residual divided by the hand box's longer side. A negative best scale (a mirrored hand)
    is clamped to 0, which makes the residual large.

    joints2d (T, J, 2) px, joints3d (T, J, 3) m, hand_box (T, 4) px -> (T,) unitless.
    """
    xy = joints3d[..., :2]
    xy_centred = xy - xy.mean(1, keepdims=True)
    p_centred = joints2d - joints2d.mean(1, keepdims=True)
    scale = (xy_centred * p_centred).sum((1, 2)) / np.maximum((xy_centred**2).sum((1, 2)), 1e-12)
    scale = np.maximum(scale, 0.0)[:, None, None]
    residual = np.linalg.norm(scale * xy_centred - p_centred, axis=-1).mean(1)
    box_size = np.maximum(hand_box[:, 2:] - hand_box[:, :2], 1e-6).max(1)
    return residual / box_size


def temporal_distance(frame_index, joints3d, window):
    """Distance of each frame's root-aligned 3D joints to its temporal neighbourhood.

    The neighbourhood of frame f is every other predicted frame g with |g - f| <= window; its
    per-coordinate median pose (robust to one bad neighbour) is compared with frame f's pose by
    the mean joint distance. frame_index (T,) strictly increasing, joints3d (T, J, 3) m ->
    (T,) metres; NaN where a frame has no neighbour. Memory is O(T * window).
    """
    frame_index = np.asarray(frame_index)
    if np.any(np.diff(frame_index) <= 0):
        raise ValueError("frame_index must be strictly increasing")
    aligned = joints3d - joints3d[:, :1]
    count = len(aligned)
    # Frame indices are distinct integers, so neighbours are within `window` positions.
    shifts = [k for k in range(-window, window + 1) if k != 0]
    neighbours = np.full((count, len(shifts)) + aligned.shape[1:], np.nan)
    for column, k in enumerate(shifts):
        rows = np.arange(max(0, -k), min(count, count - k))
        near = np.abs(frame_index[rows + k] - frame_index[rows]) <= window
        neighbours[rows[near], column] = aligned[rows[near] + k]
    has_neighbour = ~np.isnan(neighbours[:, :, 0, 0]).all(1)
    median = np.full_like(aligned, np.nan)
    if has_neighbour.any():
        median[has_neighbour] = np.nanmedian(neighbours[has_neighbour], axis=1)
    return np.linalg.norm(aligned - median, axis=-1).mean(1)


def shape_deviation(mano_shape):
    """L2 distance of each frame's betas (T, 10) to the video's per-coefficient median."""
    return np.linalg.norm(mano_shape - np.median(mano_shape, axis=0, keepdims=True), axis=1)


def box_gap(hand_box, object_box):
    """Gap between hand and object boxes (T, 4) relative to the hand box diagonal (T,).

    0 when the boxes overlap or touch; else the shortest distance between them divided by the
    hand box's diagonal.
    """
    dx = np.maximum(
        0.0,
        np.maximum(hand_box[:, 0], object_box[:, 0]) - np.minimum(hand_box[:, 2], object_box[:, 2]),
    )
    dy = np.maximum(
        0.0,
        np.maximum(hand_box[:, 1], object_box[:, 1]) - np.minimum(hand_box[:, 3], object_box[:, 3]),
    )
    diagonal = np.maximum(np.linalg.norm(hand_box[:, 2:] - hand_box[:, :2], axis=1), 1e-6)
    return np.hypot(dx, dy) / diagonal


def _at_most(score, threshold):
    return np.nan_to_num(score, nan=np.inf) <= threshold


@PSEUDO_LABEL_FILTER_REGISTRY.register()
def detection(predictions, cfg):
    """Detector confidence of the hand and of the object."""
    f = cfg.SEMI.FILTER
    hand, obj = predictions["hand_score"], predictions["object_score"]
    return {"hand_score": hand, "object_score": obj}, (hand >= f.MIN_HAND_SCORE) & (
        obj >= f.MIN_OBJECT_SCORE
    )


@PSEUDO_LABEL_FILTER_REGISTRY.register()
def consistency_2d3d(predictions, cfg):
    """Heatmap 2D joints agree with the projection of the 3D joints."""
    score = residual_2d3d(predictions["joints2d"], predictions["joints3d"], predictions["hand_box"])
    return {"residual_2d3d": score}, _at_most(score, cfg.SEMI.FILTER.MAX_2D3D_RESIDUAL)


@PSEUDO_LABEL_FILTER_REGISTRY.register()
def temporal(predictions, cfg):
    """3D pose is smooth with respect to the neighbouring frames."""
    f = cfg.SEMI.FILTER
    score = temporal_distance(
        predictions["frame_index"], predictions["joints3d"], f.TEMPORAL_WINDOW
    )
    return {"temporal_distance": score}, _at_most(score, f.MAX_TEMPORAL_DISTANCE)


@PSEUDO_LABEL_FILTER_REGISTRY.register()
def shape(predictions, cfg):
    """Hand shape is stable within the video."""
    score = shape_deviation(predictions["mano_shape"])
    return {"shape_deviation": score}, _at_most(score, cfg.SEMI.FILTER.MAX_SHAPE_DEVIATION)


@PSEUDO_LABEL_FILTER_REGISTRY.register()
def interaction(predictions, cfg):
    """The hand touches the object: the boxes overlap or lie within a margin."""
    score = box_gap(predictions["hand_box"], predictions["object_box"])
    return {"box_gap": score}, _at_most(score, cfg.SEMI.FILTER.INTERACTION_MARGIN)


def apply_filters(predictions, cfg, names):
    """Run the named filters on one video's predictions.

    Returns (columns, kept): ``columns`` maps every score name and ``pass_<filter>`` to a (T,)
    array; ``kept`` (T,) is True where every filter passed (all True when ``names`` is empty,
    the data-distillation baseline).
    """
    columns = {}
    kept = np.ones(len(predictions["frame_index"]), dtype=bool)
    for name in names:
        scores, keep = PSEUDO_LABEL_FILTER_REGISTRY.get(name)(predictions, cfg)
        columns.update(scores)
        columns[f"pass_{name}"] = keep
        kept &= keep
    return columns, kept
