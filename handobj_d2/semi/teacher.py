"""The teacher of self-training: HandObjectPredictor's predictions on video frames, as the
per-frame dicts that ``PseudoLabelGenerator`` filters (``PREDICTION_FIELDS``).

Hand and object boxes come from the model's own detector (HandObjectPredictor's two passes:
detect on the whole frame, then pose on the crop) or from a boxes file (``--boxes``), a JSON
object of per-video, per-frame boxes in the frame's pixels with their detection scores:

    {"<video name>": {"<frame index>": {"hand":   [x1, y1, x2, y2, score],
                                        "object": [x1, y1, x2, y2, score]}}}

Video names are those of ``handobj_d2.data.video.find_videos``: the file name without its
extension, or the frame folder's name; for videos found inside a given directory, their path
relative to it with "/" replaced by "__". Frame indices count from 0 in decoding (or file-name)
order. A frame missing from the file, or whose "hand" or "object" is null, gets no prediction.
A hand-object detector's output converts directly, e.g. 100DOH's (Shan et al., CVPR 2020): its
hand box and score, and the box and score of the object that hand is in contact with.

Data distillation (``SEMI.MODE`` "distillation", Radosavovic et al. 2018): each frame is predicted
under every transform of SEMI.DISTILLATION_SCALES x SEMI.DISTILLATION_ROTATIONS and the
predictions are averaged (``TransformAveraging``,
transform_averaging.py). A transform (s, a) rotates the image by
a degrees (counter-clockwise as displayed) about the centre of the fused box, then the
test-time mapper crops the rotated boxes enlarged s x INPUT.HANDOBJ.CROP_SCALE times. 2D
outputs come back in the frame's pixels through the inverse of the input transform; the 3D
root-relative joints are turned back by the inverse camera roll. Rotating an image by
Q = [[cos a, sin a], [-sin a, cos a]] (pixel coordinates, y down) about the principal point is
exactly what a camera rolled by Rz = [[Q, 0], [0, 1]] about its optical axis sees, so a
prediction X' in the rotated view is X = Rz^T X' in the frame's camera (exact for square pixels
and rotation about the principal point; about the crop centre the difference is a small pan and
tilt of the view, ignored). Boxes and detection scores are those of the untransformed frame.
"""

import itertools
import json
import logging
import os

import cv2
import numpy as np

from ..engine.predictor import HandObjectPredictor
from ..geometry import roll_matrix, union_box
from .pseudo_labels import filter_names
from .transform_averaging import TransformAveraging

logger = logging.getLogger(__name__)

_BOX_PARTS = ("hand", "object")


def load_boxes_file(path):
    """Read and check a boxes file (format in the module docstring).

    Returns {video name: {frame index: {"hand": (5,), "object": (5,)} or None}}, numpy
    [x1, y1, x2, y2, score] in pixels; None where a part is null. Raises ValueError naming the
    file and the entry at fault.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"boxes file not found: {path}")
    try:
        with open(path) as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected an object {{video name: {{frame index: boxes}}}}")
    boxes = {}
    for video, frames in content.items():
        if not isinstance(frames, dict):
            raise ValueError(f"{path}: video {video!r} must map frame indices to boxes")
        boxes[video] = {}
        for key, entry in frames.items():
            where = f"{path}: video {video!r} frame {key!r}"
            try:
                index = int(key)
            except ValueError:
                raise ValueError(f"{where}: frame keys must be integers") from None
            if index < 0:
                raise ValueError(f"{where}: frame indices start at 0")
            if not isinstance(entry, dict) or set(entry) - set(_BOX_PARTS):
                raise ValueError(f"{where}: expected {{'hand': [...], 'object': [...]}}")
            parts = {part: _checked_box(entry.get(part), f"{where} {part}") for part in _BOX_PARTS}
            boxes[video][index] = None if any(b is None for b in parts.values()) else parts
    return boxes


def _checked_box(value, where):
    if value is None:
        return None
    box = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if box is None or box.shape != (5,) or not np.isfinite(box).all():
        raise ValueError(f"{where}: expected [x1, y1, x2, y2, score] (5 finite numbers)")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"{where}: empty box {box[:4].tolist()} (need x2 > x1 and y2 > y1)")
    return box


def distillation_transforms(cfg):
    """[(crop scale factor, rotation degrees)]: every pair of SEMI.DISTILLATION_SCALES and
    SEMI.DISTILLATION_ROTATIONS in "distillation" mode; None (plain predictions) in "filtered"
    mode."""
    filter_names(cfg)  # validates SEMI.MODE
    if cfg.SEMI.MODE != "distillation":
        return None
    scales, rotations = cfg.SEMI.DISTILLATION_SCALES, cfg.SEMI.DISTILLATION_ROTATIONS
    if not scales or not rotations or min(scales) <= 0:
        raise ValueError(
            "SEMI.DISTILLATION_SCALES (positive) and SEMI.DISTILLATION_ROTATIONS must not be "
            f"empty; got {list(scales)} and {list(rotations)}"
        )
    return [(float(s), float(a)) for s, a in itertools.product(scales, rotations)]


class Teacher:
    """``predict(images, frame_indices, video_name)`` for PseudoLabelGenerator.

    Args:
        predictor: a HandObjectPredictor (the teacher model).
        boxes: ``load_boxes_file`` output, or None to use the model's detector.
        camera_K: (3, 3) px intrinsics of every frame, or None (``default_intrinsics``).
        transforms: None for plain predictions, or [(crop scale factor, rotation degrees)] to
            average the predictions over (data distillation).
        batch_size: model inputs per forward pass of the transformed crops.
    """

    def __init__(self, predictor, boxes=None, camera_K=None, transforms=None, batch_size=8):
        self.predictor = predictor
        self.boxes = boxes
        self.camera_K = None if camera_K is None else np.asarray(camera_K, dtype=np.float64)
        self.transforms = None if transforms is None else list(transforms)
        self.averaging = TransformAveraging(predictor.model, batch_size)
        self._warned_videos = set()

    @property
    def averages(self):
        return self.transforms is not None

    def __call__(self, images, frame_indices, video_name):
        """Per frame a dict of PREDICTION_FIELDS (numpy; boxes (4,) px, joints2d (21, 2) px,
        joints3d (21, 3) m root-relative in the OpenCV camera frame, mano_shape (10,)), or None
        when the frame has no hand-object pair."""
        requests = [{"image": image, "camera_K": self.camera_K} for image in images]
        if self.boxes is not None:
            detections = self._given_boxes(frame_indices, video_name)
        else:
            detections = self._detect(requests)
        found = [i for i, d in enumerate(detections) if d is not None]
        if self.averages:
            poses = self._averaged_poses(
                [requests[i] for i in found], [detections[i] for i in found]
            )
        else:
            poses = self._plain_poses([requests[i] for i in found], [detections[i] for i in found])
        predictions = [None] * len(images)
        for i, pose in zip(found, poses):
            predictions[i] = {**detections[i], **pose}
        return predictions

    def _given_boxes(self, frame_indices, video_name):
        """Boxes and scores of the frames from the boxes file (None where absent)."""
        frames = self.boxes.get(video_name)
        if frames is None:
            if video_name not in self._warned_videos:
                logger.warning(f"video {video_name!r} is not in the boxes file: no predictions")
                self._warned_videos.add(video_name)
            frames = {}
        out = []
        for index in frame_indices:
            entry = frames.get(int(index))
            out.append(
                None
                if entry is None
                else {
                    "hand_box": entry["hand"][:4],
                    "hand_score": float(entry["hand"][4]),
                    "object_box": entry["object"][:4],
                    "object_score": float(entry["object"][4]),
                }
            )
        return out

    def _detect(self, requests):
        """The detector's pair per frame (boxes and scores) or None (no hand, or a hand
        without an object: a pseudo-label is a hand-object pair); in plain mode the poses of
        that predictor call are kept and reused by ``_plain_poses``."""
        out = []
        for request, output in zip(requests, self.predictor.predict_batch(requests)):
            pairs = output["instances"]
            if not len(pairs) or not bool(pairs.pred_has_object[0]):
                out.append(None)
                continue
            out.append(
                {
                    "hand_box": pairs.pred_boxes.tensor[0].cpu().numpy().astype(np.float64),
                    "hand_score": float(pairs.scores[0]),
                    "object_box": pairs.pred_object_boxes.tensor[0]
                    .cpu()
                    .numpy()
                    .astype(np.float64),
                    "object_score": float(pairs.object_scores[0]),
                }
            )
            if not self.averages:
                request["pose"] = _pose_fields(pairs)
        return out

    def _plain_poses(self, requests, detections):
        """Untransformed predictions on the given (or already detected) boxes."""
        todo = [(r, d) for r, d in zip(requests, detections) if "pose" not in r]
        given = [{**r, "hand_box": d["hand_box"], "object_box": d["object_box"]} for r, d in todo]
        for (request, _), output in zip(todo, self.predictor.predict_batch(given)):
            request["pose"] = _pose_fields(output["instances"])
        return [r["pose"] for r in requests]

    def _averaged_poses(self, requests, detections):
        """Predictions averaged over ``transforms`` (data distillation)."""
        views = [
            [
                self._transformed_input(request, detection, scale, degrees)
                for scale, degrees in self.transforms
            ]
            for request, detection in zip(requests, detections)
        ]
        return [_pose_fields(fields) for fields in self.averaging(views)]

    def _transformed_input(self, request, detection, scale, degrees):
        """Model input of one transform: the frame rotated by ``degrees`` about the centre of
        the fused box, then the mapper's crop of the rotated boxes, enlarged ``scale`` x
        CROP_SCALE times. Returns (record, Rz)."""
        fused = union_box(detection["hand_box"], detection["object_box"])
        centre = (fused[:2] + fused[2:]) / 2
        rotation = np.eye(3)
        rotation[:2] = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), degrees, 1.0)
        boxes = {f"{part}_box": detection[f"{part}_box"] for part in _BOX_PARTS}
        record = self.predictor.model_input(
            {**request, **boxes}, self.predictor.crop_scale * scale, view=rotation
        )
        return record, roll_matrix(-np.radians(degrees))  # Q = rotation[:2, :2] (module)


def _pose_fields(pairs):
    """joints2d (21, 2) px, root-relative joints3d (21, 3) m and mano_shape (10,) of row 0 of
    the ``pred_*`` fields of ``pairs`` (Instances or dict)."""
    fields = pairs if isinstance(pairs, dict) else pairs.get_fields()
    joints3d = fields["pred_joints3d"][0].cpu().numpy().astype(np.float64)
    return {
        "joints2d": fields["pred_joints2d"][0].cpu().numpy().astype(np.float64),
        "joints3d": joints3d - joints3d[:1],
        "mano_shape": fields["pred_mano_shape"][0].cpu().numpy().astype(np.float64),
    }


def build_teacher(cfg, boxes_file=None, camera_K=None):
    """A Teacher for ``cfg`` (MODEL.WEIGHTS: the teacher's checkpoint; SEMI.MODE, SEMI.BATCH_SIZE,
    SEMI.DISTILLATION_*), with boxes from ``boxes_file`` or the model's detector."""
    transforms = distillation_transforms(cfg)
    boxes = load_boxes_file(boxes_file) if boxes_file else None
    logger.info(
        f"Teacher: boxes from {boxes_file or 'the detector'}; "
        + (f"averaged over {len(transforms)} transforms" if transforms else "one view per frame")
    )
    return Teacher(HandObjectPredictor(cfg), boxes, camera_K, transforms, cfg.SEMI.BATCH_SIZE)
