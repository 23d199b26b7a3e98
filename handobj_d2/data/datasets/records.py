"""Pieces every loader shares: layout checks, image sizes, skipped-frame accounting and the
hand / object annotations of docs/design.md ("Dataset records"), built from camera-frame
(OpenCV, metres) 3D labels and the intrinsics."""

import logging
import os
from collections import Counter

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...constants import CLASS_NAMES, HAND_CLASS, NUM_JOINTS, OBJECT_CLASS
from ...geometry import box_control_points, points_to_box, project_points
from ...utils.io import read_image

logger = logging.getLogger(__name__)


def check_layout(dataset, root, required):
    """Raise FileNotFoundError listing every path of ``required`` (relative to ``root``) that
    does not exist."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{dataset}: dataset root not found: {root}. See datasets/README.md for where the "
            "files go (root from $HANDOBJ_DATASETS, default ./datasets)."
        )
    missing = [p for p in required if not os.path.exists(os.path.join(root, p))]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: incomplete dataset at {root}; missing: {', '.join(missing)}. "
            "See datasets/README.md for the expected layout."
        )


def check_files_exist(dataset, paths, what="image files", shown=5):
    """Raise FileNotFoundError naming the first ``shown`` of ``paths`` that do not exist and
    their count. One directory listing per folder, not a stat per file (datasets hold ~10^5
    frames, often on network storage)."""
    listings, missing = {}, []
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if name not in listings[folder]:
            missing.append(path)
    if missing:
        more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
        raise FileNotFoundError(
            f"{dataset}: {len(missing)} of {len(paths)} {what} are missing: "
            f"{', '.join(missing[:shown])}{more}"
        )


def image_size(path):
    """(height, width) of an image file; clear errors for missing or corrupt files."""
    return read_image(path).shape[:2]


class SkipCounter(Counter):
    """Frames left out by a loader, by reason; ``log`` reports them with the kept count."""

    def log(self, dataset, kept):
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.items()) if n)
        logger.info(f"{dataset}: {kept} records" + (f"; left out: {skipped}" if skipped else ""))


def as_array(value, shape, what, path):
    """``value`` as a finite float64 array of ``shape`` (None in ``shape``: any length); a
    ValueError naming ``path`` and ``what`` otherwise."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: '{what}' is not numeric") from None
    if array.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, array.shape)
    ):
        raise ValueError(f"{path}: '{what}' has shape {array.shape}, expected {tuple(shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: '{what}' has non-finite values")
    return array


def _f32(array):
    return np.asarray(array, dtype=np.float32)


def hand_annotation(
    K, joints3d=None, joints2d=None, bbox=None, root3d=None, mano_pose=None, mano_shape=None
):
    """Hand annotation. joints3d (21, 3) m camera frame (manopth order); joints2d (21, 2) px,
    projected from joints3d with K when not given; bbox [x1, y1, x2, y2] px, the joints' tight
    box when not given; root3d (3,) m when only the wrist is known; MANO parameters when fit."""
    annotation = {"category_id": HAND_CLASS, "bbox_mode": BoxMode.XYXY_ABS, "iscrowd": 0}
    if joints3d is not None:
        annotation["joints3d"] = _f32(joints3d)
        if joints2d is None:
            joints2d = project_points(np.asarray(joints3d, np.float64), K)
    if joints2d is not None:
        annotation["joints2d"] = _f32(joints2d)
        if bbox is None:
            bbox = points_to_box(joints2d)
    if bbox is None:
        raise ValueError("a hand annotation needs a box, 2D joints or 3D joints")
    annotation["bbox"] = [float(v) for v in bbox]
    if root3d is not None:
        annotation["root3d"] = _f32(root3d)
    if mano_pose is not None:
        annotation["mano_pose"] = _f32(mano_pose)
        annotation["mano_shape"] = _f32(mano_shape)
    return annotation


def object_annotation(name, R, t, corners, model, K):
    """Object annotation of model ``model`` (an ObjectModels entry) at pose R (3, 3), t (3,) m
    (object frame -> OpenCV camera frame). corners: points (N, 3) m in the object frame whose
    axis-aligned bounds give the 3D bounding box (8 corners, or the model points). The 2D box
    bounds the projected model."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64)
    points3d = box_control_points(corners)
    return {
        "category_id": OBJECT_CLASS,
        "bbox": [float(v) for v in points_to_box(project_points(model["hull"] @ R.T + t, K))],
        "bbox_mode": BoxMode.XYXY_ABS,
        "iscrowd": 0,
        "object_name": name,
        "object_R": _f32(R),
        "object_t": _f32(t),
        "control_points3d": _f32(points3d),
        "control_points2d": _f32(project_points(points3d @ R.T + t, K)),
        "object_diameter": float(model["diameter"]),
    }


def joints_valid(joints, shape=(NUM_JOINTS, 3)):
    """Whether an array holds real joints (not the -1 / 0 fill some datasets use)."""
    joints = np.asarray(joints)
    return joints.shape == shape and not (np.all(joints == -1) or np.all(joints == 0))


def register_handobj_dataset(name, load, root, split, object_models, unseen_objects=(), **extra):
    """Register ``load`` (a function returning the records) as dataset ``name`` with the
    metadata every hand-object dataset carries (evaluator_type "handobj", object_models,
    unseen_objects, where it lives) plus ``extra``."""
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASS_NAMES),
        evaluator_type="handobj",
        dataset_root=root,
        split=split,
        object_models=object_models,
        unseen_objects=tuple(unseen_objects),
        **extra,
    )
