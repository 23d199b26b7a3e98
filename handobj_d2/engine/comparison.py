"""Two models side by side on the same inputs (the seed supplement's Appendix D figures).

Each model is a config + weights, run by :class:`HandObjectPredictor` on the same images with
the same boxes (the dataset's labelled boxes, as the evaluation protocol gives them, or each
model's own detections). Every picture holds one batch of inputs: one column per input, one row
per model (the baseline on top), each cell the model's skeleton and hand mesh (and object box)
drawn on the input, captioned with the model's label and, where the record has 2D joints, its
mean 2D joint error in pixels.
"""

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np
from detectron2.data import DatasetCatalog
from tqdm import tqdm

from ..constants import HAND_CLASS, OBJECT_CLASS
from ..geometry import default_intrinsics
from ..utils.io import read_image, write_atomically
from ..visualization import draw_hand_object
from .predictor import HandObjectPredictor

CAPTION_HEIGHT = 18  # pixels of the caption strip above each cell


@dataclass
class ComparedModel:
    """A model of the comparison: its caption ``label`` and its ``predictor``."""

    label: str
    predictor: HandObjectPredictor


@dataclass
class ComparisonInput:
    """One input image: ``file_name``, ``camera_K`` (3, 3) px or None, the labelled
    ``hand_box`` / ``object_box`` [x1, y1, x2, y2] px (None: detect / no object),
    ``control_points3d`` (21, 3) m of the object or None, ``joints2d`` (21, 2) px ground truth
    or None."""

    file_name: str
    camera_K: np.ndarray = None
    hand_box: list = None
    object_box: list = None
    control_points3d: np.ndarray = None
    joints2d: np.ndarray = None


def dataset_inputs(dataset_name, num_images, given_boxes=True):
    """The first ``num_images`` records of a registered dataset as :class:`ComparisonInput`;
    with ``given_boxes`` the records' hand and object boxes are given to the models (the
    evaluation protocol), otherwise the models detect them."""
    records = DatasetCatalog.get(dataset_name)[:num_images]
    if not records:
        raise ValueError(f"dataset {dataset_name!r} has no record to compare on")
    inputs = []
    for record in records:
        hand = next((a for a in record["annotations"] if a["category_id"] == HAND_CLASS), None)
        obj = next((a for a in record["annotations"] if a["category_id"] == OBJECT_CLASS), None)
        points = None if obj is None else obj.get("control_points3d")
        inputs.append(
            ComparisonInput(
                file_name=record["file_name"],
                camera_K=np.asarray(record["camera_K"], dtype=np.float64),
                hand_box=list(hand["bbox"]) if given_boxes and hand is not None else None,
                object_box=list(obj["bbox"]) if given_boxes and obj is not None else None,
                control_points3d=None if points is None else np.asarray(points, np.float64),
                joints2d=None if hand is None or "joints2d" not in hand else np.asarray(
                    hand["joints2d"], dtype=np.float64
                ),
            )
        )
    return inputs


def image_inputs(paths, hand_box=None, object_box=None):
    """:class:`ComparisonInput` of image files, with the same given boxes (or none: detect)."""
    return [ComparisonInput(path, hand_box=hand_box, object_box=object_box) for path in paths]


def joints2d_error(pairs, joints2d):
    """Mean 2D joint distance (px) of the first predicted hand to ``joints2d`` (21, 2) px, or
    None without a prediction or a ground truth."""
    if joints2d is None or len(pairs) == 0:
        return None
    predicted = pairs.pred_joints2d[0].numpy().astype(np.float64)
    return float(np.linalg.norm(predicted - joints2d, axis=-1).mean())


def captioned(image, text):
    """The image under a black strip of CAPTION_HEIGHT px holding ``text`` (white)."""
    strip = np.zeros((CAPTION_HEIGHT, image.shape[1], 3), dtype=np.uint8)
    cv2.putText(strip, text, (3, CAPTION_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return np.concatenate([strip, image], axis=0)


def picture_grid(rows):
    """One picture from rows of equally sized BGR images (row-major)."""
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def compare_models(models, inputs, output, per_picture=4):
    """Run every model on every input and write ``comparison_{k:03d}.png`` (k-th batch of
    ``per_picture`` inputs, one row per model in the order of ``models``) and
    ``comparison.json`` (per input and model: the 2D joint error in px, whether a hand was
    found) into ``output``. Returns the picture paths."""
    if len(models) < 2:
        raise ValueError("compare_models needs at least two models")
    os.makedirs(output, exist_ok=True)
    pictures, entries = [], []
    batches = [inputs[i : i + per_picture] for i in range(0, len(inputs), per_picture)]
    for index, batch in enumerate(tqdm(batches, desc="comparing", unit="picture")):
        rows = [[] for _ in models]
        for item in batch:
            image = read_image(item.file_name)
            entry = {"file_name": item.file_name}
            for row, model in zip(rows, models):
                drawing, error, found = _draw(model.predictor, image, item)
                caption = model.label if error is None else f"{model.label}: {error:.1f} px"
                row.append(captioned(drawing, caption))
                entry[model.label] = {"joints2d_error_px": error, "hand_found": found}
            entries.append(entry)
        path = os.path.join(output, f"comparison_{index:03d}.png")
        ok, encoded = cv2.imencode(".png", picture_grid(_padded(rows, per_picture)))
        if not ok:
            raise OSError(f"cannot encode {path}")
        write_atomically(path, encoded.tobytes())
        pictures.append(path)
    write_atomically(
        os.path.join(output, "comparison.json"), json.dumps(entries, indent=1).encode()
    )
    return pictures


def _draw(predictor, image, item):
    output = predictor(
        image,
        camera_K=item.camera_K,
        hand_box=item.hand_box,
        object_box=item.object_box,
        control_points3d=item.control_points3d,
    )
    pairs = output["instances"].to("cpu")
    K = item.camera_K
    if K is None:
        K = default_intrinsics(image.shape[1], image.shape[0])
    drawing = draw_hand_object(image, pairs, K, predictor.hand_faces, item.control_points3d)
    return drawing, joints2d_error(pairs, item.joints2d), len(pairs) > 0


def _padded(rows, width):
    """Rows of the last, partial batch are filled up to ``width`` cells with black ones."""
    for row in rows:
        row += [np.zeros_like(row[0])] * (width - len(row))
    return rows
