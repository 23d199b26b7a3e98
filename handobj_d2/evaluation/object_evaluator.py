"""ObjectPoseEvaluator: 6-DoF object pose metrics per object class through Detectron2's
evaluation loop (ADD-0.1D / ADD-S-0.1D, ADD, REP-5px, control-point distance)."""

import json
import logging
import os
from collections import OrderedDict, defaultdict

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from ..constants import OBJECT_CLASS
from ..geometry import box_control_points
from .hand_evaluator import annotation_of, field, first_pair, gather_per_image
from .metrics import (
    add_distance,
    adds_distance,
    mean_corner_distance,
    reprojection_error,
    within_diameter,
)

logger = logging.getLogger(__name__)

# REP-5px: a pose is correct when the mean reprojection error is below this (pixels).
REPROJECTION_THRESHOLD = 5.0
# ADD(-S)-0.1D: a pose is correct when its ADD(-S) is below this fraction of the diameter.
DIAMETER_FRACTION = 0.1


class ObjectPoseEvaluator(DatasetEvaluator):
    """Object evaluation of the model's first hand-object pair per image.

    The ground truth comes from the records' object annotations (``object_name``,
    ``object_R``, ``object_t``, OpenCV camera frame, metres; ``camera_K``) and the dataset
    metadata's ``object_models`` (name -> ``points`` (N, 3) m, ``diameter`` m, ``symmetric``)
    and ``unseen_objects``. A class without a model falls back on the annotation's
    ``control_points3d`` and ``object_diameter``.

    Returns ``{"object": {...}}``, percentages and millimetres: ``ADD0.1D_<name>`` per class
    (ADD-S for symmetric objects), ``ADD0.1D_seen`` / ``ADD0.1D_unseen`` (means over classes),
    ``REP5px``, ``pose_valid`` (images with a pose), and over images with a pose ``ADD_mm``,
    ``reprojection_px`` and ``control_points_mm`` (FPHA-style mean control-point distance).
    A failed PnP (``pred_object_pose_valid`` False) or a missing prediction (no pair, or a pair
    without an object: ``pred_has_object`` False) is a miss (infinite error) where the record
    has an object pose; records without one (a hand holding nothing) are not scored. With
    ``output_dir``, the predicted poses go to ``object_poses.json``.
    """

    def __init__(self, dataset_name, output_dir=None, distributed=True):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self.reset()

    def reset(self):
        self._predictions = {}

    def process(self, inputs, outputs):
        for sample, output in zip(inputs, outputs):
            pair = first_pair(output)
            prediction = None
            has_object = pair is not None and pair.has("pred_has_object")
            has_object = has_object and bool(pair.pred_has_object[0])
            if has_object and pair.has("pred_object_R") and pair.has("pred_object_t"):
                valid = field(pair, "pred_object_pose_valid")
                prediction = {
                    "object_R": field(pair, "pred_object_R"),
                    "object_t": field(pair, "pred_object_t"),
                    "valid": bool(valid) if valid is not None else True,
                }
            self._predictions[sample["image_id"]] = prediction

    def evaluate(self):
        predictions = gather_per_image(self._predictions, self._distributed)
        if predictions is None:
            return {}
        records = DatasetCatalog.get(self._dataset_name)
        if self._output_dir:
            self._write_poses(records, predictions)
        metadata = MetadataCatalog.get(self._dataset_name)
        samples = self._samples_by_class(records, predictions, metadata)
        if not samples:
            logger.info("%s: no object pose ground truth to evaluate", self._dataset_name)
            return {}
        unseen = set(metadata.get("unseen_objects", ()))
        errors = {name: _class_errors(*samples[name]) for name in sorted(samples)}
        results = OrderedDict()
        for name, e in errors.items():
            results[f"ADD0.1D_{name}"] = 100.0 * e["hits"].mean()
        for group, names in (("seen", [n for n in errors if n not in unseen]),
                             ("unseen", [n for n in errors if n in unseen])):  # fmt: skip
            if names:
                results[f"ADD0.1D_{group}"] = np.mean([results[f"ADD0.1D_{n}"] for n in names])
        valid = np.concatenate([e["valid"] for e in errors.values()])
        results["pose_valid"] = 100.0 * valid.mean()
        reprojection = np.concatenate([e["reprojection"] for e in errors.values()])
        if len(reprojection):
            results["REP5px"] = 100.0 * np.mean(reprojection < REPROJECTION_THRESHOLD)
        for key, name, scale in (("ADD", "ADD_mm", 1000), ("reprojection", "reprojection_px", 1),
                                 ("control_points", "control_points_mm", 1000)):  # fmt: skip
            values = np.concatenate([e[key] for e in errors.values()])
            values = values[np.isfinite(values)]
            if len(values):
                results[name] = scale * values.mean()
        return OrderedDict(object={key: float(value) for key, value in results.items()})

    def _samples_by_class(self, records, predictions, metadata):
        """name -> (model dict, list of per-image ground truth and prediction)."""
        models = metadata.get("object_models", {}) or {}
        samples = defaultdict(lambda: (None, []))
        for record in records:
            annotation = annotation_of(record, OBJECT_CLASS)
            if record["image_id"] not in predictions or annotation is None:
                continue
            if annotation.get("object_R") is None or annotation.get("object_t") is None:
                continue
            name = annotation["object_name"]
            model, items = samples[name]
            if model is None:
                model = _object_model(name, models, annotation, self._dataset_name)
                samples[name] = (model, items)
            prediction = predictions[record["image_id"]]
            gt_points = annotation.get("control_points3d")
            if gt_points is None:
                gt_points = box_control_points(model["points"])
            K = record.get("camera_K")
            items.append(
                {
                    "gt_R": np.asarray(annotation["object_R"], np.float64),
                    "gt_t": np.asarray(annotation["object_t"], np.float64),
                    "R": np.eye(3) if prediction is None else prediction["object_R"],
                    "t": np.zeros(3) if prediction is None else prediction["object_t"],
                    "valid": prediction is not None and prediction["valid"],
                    "control_points": np.asarray(gt_points, np.float64),
                    "K": None if K is None else np.asarray(K, np.float64),
                }
            )
        return dict(samples)

    def _write_poses(self, records, predictions):
        poses = []
        for record in records:
            prediction = predictions.get(record["image_id"])
            entry = {"image_id": record["image_id"], "valid": False}
            if prediction is not None:
                entry.update(
                    object_R=prediction["object_R"].tolist(),
                    object_t=prediction["object_t"].tolist(),
                    valid=prediction["valid"],
                )
            poses.append(entry)
        os.makedirs(self._output_dir, exist_ok=True)
        with open(os.path.join(self._output_dir, "object_poses.json"), "w") as f:
            json.dump(poses, f)


def _object_model(name, models, annotation, dataset_name):
    """{points (N, 3) m, diameter m, symmetric bool} of object ``name``."""
    if name in models:
        model = models[name]
        return {
            "points": np.asarray(model["points"], np.float64),
            "diameter": float(model["diameter"]),
            "symmetric": bool(model.get("symmetric", False)),
        }
    if annotation.get("control_points3d") is None or annotation.get("object_diameter") is None:
        raise ValueError(
            f"{dataset_name}: object '{name}' has no entry in the metadata's object_models and "
            "its annotation lacks control_points3d / object_diameter"
        )
    logger.warning(
        "%s: no model of object '%s' in the metadata; using its control points", dataset_name,
        name,
    )  # fmt: skip
    return {
        "points": np.asarray(annotation["control_points3d"], np.float64),
        "diameter": float(annotation["object_diameter"]),
        "symmetric": False,
    }


def _class_errors(model, items):
    """Per-image errors of one object class; failed or missing poses are inf (misses).

    Returns hits (ADD(-S) below 0.1 diameter), valid, ADD, control_points (m), and
    reprojection (px, images with intrinsics only), each (M,).
    """
    valid = np.array([item["valid"] for item in items])
    gt_R = np.stack([item["gt_R"] for item in items])
    gt_t = np.stack([item["gt_t"] for item in items])
    # Failed poses are computed with the ground truth's, then replaced by inf.
    pred_R = np.where(valid[:, None, None], np.stack([item["R"] for item in items]), gt_R)
    pred_t = np.where(valid[:, None], np.stack([item["t"] for item in items]), gt_t)
    pose = (pred_R, pred_t, gt_R, gt_t)
    points = model["points"]
    symmetric_add = (
        adds_distance(*pose, points) if model["symmetric"] else add_distance(*pose, points)
    )
    corners = np.stack([item["control_points"] for item in items])
    with_K = np.array([item["K"] is not None for item in items])
    reprojection = np.zeros(0)
    if with_K.any():
        K = np.stack([item["K"] for item in items if item["K"] is not None])
        reprojection = reprojection_error(*(a[with_K] for a in pose), points, K)
        reprojection = np.where(valid[with_K], reprojection, np.inf)
    miss = np.where(valid, 0.0, np.inf)
    return {
        "hits": within_diameter(symmetric_add + miss, model["diameter"], DIAMETER_FRACTION),
        "valid": valid,
        "ADD": add_distance(*pose, points) + miss,
        "control_points": mean_corner_distance(*pose, corners) + miss,
        "reprojection": reprojection,
    }
