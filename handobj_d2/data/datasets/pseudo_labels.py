"""Pseudo-label datasets: Detectron2 dataset dicts written as JSON by
``tools/generate_pseudo_labels.py`` and registered with ``register_pseudo_label_dataset``.

The JSON file is a list of records in the format of docs/design.md ("Dataset records") with
``is_pseudo_label: true``. The hand annotation carries ``joints2d`` (21, 2) pixels and
``joints3d`` (21, 3) metres, root-relative (wrist at 0) in the OpenCV camera frame, and no MANO
fields; the object annotation carries a box only unless the teacher's pose was kept. Relative
``file_name`` paths are relative to the JSON file's folder.
"""

import json
import logging
import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...constants import CLASS_NAMES, HAND_CLASS, NUM_JOINTS

logger = logging.getLogger(__name__)

_REQUIRED_RECORD_KEYS = ("file_name", "image_id", "height", "width", "annotations")


def _check_record(record, json_path, position):
    where = f"{json_path}: record {position}"
    missing = [k for k in _REQUIRED_RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    hands = [a for a in record["annotations"] if a.get("category_id") == HAND_CLASS]
    if len(hands) != 1:
        raise ValueError(f"{where} ({record['image_id']}) must have exactly one hand annotation")
    for key, shape in (
        ("joints2d", (NUM_JOINTS, 2)),
        ("joints3d", (NUM_JOINTS, 3)),
        ("bbox", (4,)),
    ):
        value = np.asarray(hands[0].get(key, []), dtype=np.float64)
        if value.shape != shape or not np.isfinite(value).all():
            raise ValueError(f"{where} ({record['image_id']}): hand '{key}' must be finite {shape}")


def load_pseudo_labels(json_path):
    """Records of a pseudo-label JSON file, checked, with absolute file names."""
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"pseudo-label file not found: {json_path}")
    try:
        with open(json_path) as f:
            records = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise ValueError(f"{json_path}: expected a list of dataset records")
    folder = os.path.dirname(os.path.abspath(json_path))
    for position, record in enumerate(records):
        _check_record(record, json_path, position)
        record["file_name"] = os.path.join(folder, record["file_name"])
        record["is_pseudo_label"] = True
        for annotation in record["annotations"]:
            annotation["bbox_mode"] = BoxMode(annotation.get("bbox_mode", BoxMode.XYXY_ABS))
    logger.info(f"Loaded {len(records)} pseudo-labeled frames from {json_path}")
    return records


def register_pseudo_label_dataset(name, json_path):
    """Register the pseudo-labels in ``json_path`` as dataset ``name`` (checked immediately)."""
    load_pseudo_labels(json_path)  # fail fast on a missing or malformed file
    DatasetCatalog.register(name, lambda: load_pseudo_labels(json_path))
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASS_NAMES),
        json_file=json_path,
        evaluator_type="none",
        is_pseudo_label=True,
    )
