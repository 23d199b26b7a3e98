"""The demo: predict on images, videos or a webcam; draw the predictions, save the hand meshes
and a JSON of every prediction (``tools/demo.py`` is its command line).

Images are BGR uint8; meshes are in metres in the OpenCV camera frame of the intrinsics used.
"""

import json
import logging
import os

import cv2
import numpy as np
from tqdm import tqdm

from ..data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoSource
from ..geometry import default_intrinsics, intrinsics_matrix
from ..mesh_io import export_mesh
from ..utils.io import read_image, write_atomically
from ..visualization import draw_hand_object
from .predictor import HandObjectPredictor

logger = logging.getLogger(__name__)


class DemoInputError(ValueError):
    """A user-facing problem with an input path."""


def expand_inputs(paths):
    """Inputs -> list of ("image", path) / ("video", path) / ("webcam", 0) in order."""
    items = []
    for path in paths:
        if path == "webcam":
            items.append(("webcam", 0))
        elif os.path.isdir(path):
            images = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
            videos = sorted(f for f in os.listdir(path) if f.lower().endswith(VIDEO_EXTENSIONS))
            if not images and not videos:
                raise DemoInputError(f"{path}: folder holds no images or videos")
            items += [("image", os.path.join(path, f)) for f in images]
            items += [("video", os.path.join(path, f)) for f in videos]
        elif not os.path.isfile(path):
            raise DemoInputError(f"input not found: {path}")
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            items.append(("video", path))
        elif path.lower().endswith(IMAGE_EXTENSIONS):
            items.append(("image", path))
        else:
            raise DemoInputError(
                f"{path}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or a video "
                f"({', '.join(VIDEO_EXTENSIONS)})"
            )
    return items


def run_demo(cfg, inputs, output, intrinsics=None, object_name=None, mesh_format="obj",
             max_frames=300, given_boxes=None):  # fmt: skip
    """tools/demo.py's job: the model of ``cfg`` on every input (images, folders, videos or
    "webcam", ``expand_inputs``; the webcam for ``max_frames`` frames) into the folder
    ``output``, then <output>/predictions.json. ``given_boxes`` (:class:`GivenBoxes`) replaces
    the detector, which a model without one (MODEL.HANDOBJ.HAS_TRAINED_DETECTOR False) needs.
    Bad input raises DemoInputError, OSError or ValueError naming it, before the model is built
    where it can. Returns the inputs in which no hand was found."""
    if given_boxes is None and not cfg.MODEL.HANDOBJ.HAS_TRAINED_DETECTOR:
        raise DemoInputError(
            "this model has no trained detector (MODEL.HANDOBJ.HAS_TRAINED_DETECTOR False): "
            "give --hand-box and --object-box, or --boxes"
        )
    items = expand_inputs(inputs)
    demo = Demo(HandObjectPredictor(cfg), output, intrinsics, object_name, mesh_format,
                given_boxes)  # fmt: skip
    missing = []
    for kind, path in items:
        if kind == "image":
            found = demo.image(path)
        elif kind == "video":
            found = demo.video(path)
        else:
            found = demo.webcam(max_frames)
        if not found:
            missing.append(str(path))
    write_atomically(os.path.join(output, "predictions.json"), json.dumps(demo.entries))
    return missing


def _pair(value, where):
    """{"hand_box": [x1, y1, x2, y2], "object_box": [...] (optional: a hand without an
    object)} -> (hand box, object box or None), float arrays (pixels)."""
    keys = set(value) if isinstance(value, dict) else set()
    if "hand_box" not in keys or not keys <= {"hand_box", "object_box"}:
        raise DemoInputError(f"{where}: expected {{'hand_box': [x1, y1, x2, y2], 'object_box': "
                             f"[x1, y1, x2, y2] (optional)}}, got {value!r}")  # fmt: skip
    boxes = []
    for key in ("hand_box", "object_box"):
        if value.get(key) is None:
            boxes.append(None)
            continue
        box = np.asarray(value[key], dtype=np.float64)
        if box.shape != (4,) or not np.isfinite(box).all() or (box[2:] <= box[:2]).any():
            raise DemoInputError(f"{where}: {key} must be [x1, y1, x2, y2] with x1 < x2, y1 < y2, "
                                 f"got {value[key]!r}")  # fmt: skip
        boxes.append(box)
    return tuple(boxes)


class GivenBoxes:
    """Hand and object boxes (pixels of the input image) given by the user instead of the
    detector: one pair for every input, or per input from a JSON file.

    The file maps an input (its path as given on the command line, or its file name) to a pair
    ``{"hand_box": [x1, y1, x2, y2], "object_box": [x1, y1, x2, y2]}`` (without ``object_box``:
    a hand holding nothing); a video's entry is one pair for all its frames or a list with a
    pair (or null: detect) per frame.
    """

    def __init__(self, pair=None, per_input=None, source="--hand-box/--object-box"):
        self.pair = pair
        self.per_input = per_input
        self.source = source

    @classmethod
    def from_pair(cls, hand_box, object_box):
        """The same pair for every input."""
        pair = {"hand_box": hand_box, "object_box": object_box}
        return cls(pair=_pair(pair, "--hand-box/--object-box"))

    @classmethod
    def from_file(cls, path):
        try:
            with open(path) as f:
                entries = json.load(f)
        except (OSError, ValueError) as e:
            raise DemoInputError(f"{path}: cannot read the boxes file ({e})") from None
        if not isinstance(entries, dict):
            raise DemoInputError(f"{path}: expected an object mapping inputs to box pairs")
        per_input = {}
        for name, value in entries.items():
            if isinstance(value, list):
                per_input[name] = [
                    None if v is None else _pair(v, f"{path}: {name!r} frame {i}")
                    for i, v in enumerate(value)
                ]
            else:
                per_input[name] = _pair(value, f"{path}: {name!r}")
        return cls(per_input=per_input, source=path)

    def lookup(self, source, frame=None):
        """(hand_box, object_box) for an input path (and video frame index), or None."""
        if self.per_input is None:
            return self.pair
        entry = self.per_input.get(str(source), self.per_input.get(os.path.basename(str(source))))
        if entry is None:
            raise DemoInputError(f"{self.source}: no boxes for {source}")
        if isinstance(entry, list):
            if frame is None or frame >= len(entry):
                raise DemoInputError(f"{self.source}: no boxes for frame {frame} of {source}")
            return entry[frame]
        return entry


class Demo:
    """Predict, draw and save; ``entries`` collects the JSON of every image/frame.
    ``given_boxes`` (:class:`GivenBoxes`) replaces the detector's hand and object boxes."""

    def __init__(self, predictor, output, intrinsics=None, object_name=None, mesh_format="obj",
                 given_boxes=None):  # fmt: skip
        self.predictor = predictor
        self.given_boxes = given_boxes
        self.output = output
        self.intrinsics = intrinsics
        self.object_name = object_name
        self.mesh_format = mesh_format
        self.faces = predictor.hand_faces
        self.control_points3d = (
            predictor.control_points(object_name) if object_name is not None else None
        )
        self.entries = []
        os.makedirs(output, exist_ok=True)

    def camera(self, image):
        if self.intrinsics is None:
            return default_intrinsics(image.shape[1], image.shape[0])
        return intrinsics_matrix(self.intrinsics)

    def process(self, image, name, source, frame=None, camera_K=None, object_name=None,
                boxes=None):  # fmt: skip
        """Predict on a BGR image, save its meshes and JSON entry; returns (drawing, found).
        ``camera_K`` / ``object_name`` override the demo's intrinsics and object for this image;
        ``boxes``: (hand_box, object_box or None) [x1, y1, x2, y2] px given instead of
        detected."""
        K = self.camera(image) if camera_K is None else np.asarray(camera_K, dtype=np.float64)
        points = self.control_points3d
        if object_name is not None:
            points = self.predictor.control_points(object_name)
        if boxes is None and self.given_boxes is not None:
            boxes = self.given_boxes.lookup(source, frame)
        hand_box, object_box = boxes if boxes is not None else (None, None)
        output = self.predictor(image, camera_K=K, hand_box=hand_box, object_box=object_box,
                                control_points3d=points)  # fmt: skip
        pairs = output["instances"].to("cpu")
        mesh_files = []
        for row in range(len(pairs)):
            path = os.path.join(self.output, "meshes", f"{name}_hand{row}.{self.mesh_format}")
            vertices = pairs.pred_vertices[row].numpy() + pairs.pred_root3d[row].numpy()
            export_mesh(path, vertices, self.faces)
            mesh_files.append(os.path.relpath(path, self.output))
        self.entries.append(
            {
                "input": source,
                "frame": frame,
                "camera_K": K.tolist(),
                "pairs": [_pair_json(pairs, row) for row in range(len(pairs))],
                "mesh_files": mesh_files,
            }
        )
        drawing = draw_hand_object(image, pairs, K, self.faces, points)
        return drawing, len(pairs) > 0

    def image(self, path, name=None, camera_K=None, object_name=None, boxes=None):
        """Annotate one image file into <output>/<name>.jpg (name: the file's stem)."""
        image = read_image(path)
        name = name or os.path.splitext(os.path.basename(path))[0]
        drawing, found = self.process(image, name, path, None, camera_K, object_name, boxes)
        out = os.path.join(self.output, f"{name}.jpg")
        if not cv2.imwrite(out, drawing):
            raise OSError(f"cannot write {out}")
        if not found:
            logger.warning(f"{path}: no hand found")
        return found

    def frames(self, frames, name, source, fps, total=None):
        """Annotate a stream of (index, BGR frame) into <output>/<name>.mp4."""
        writer, found = None, 0
        out = os.path.join(self.output, f"{name}.mp4")
        for index, frame in tqdm(frames, total=total, desc=name, unit="frame"):
            drawing, hand = self.process(frame, f"{name}/{index:06d}", source, index)
            found += hand
            if writer is None:
                height, width = drawing.shape[:2]
                writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (width, height))  # fmt: skip
            writer.write(drawing)
        if writer is not None:
            writer.release()
        if not found:
            logger.warning(f"{source}: no hand found in any frame")
        return found > 0

    def video(self, path):
        try:
            source = VideoSource(path)
        except ValueError as e:
            raise DemoInputError(str(e)) from None
        try:
            return self.frames(iter(source), source.name, path, source.fps, len(source))
        except ValueError as e:  # no decodable frame
            raise DemoInputError(str(e)) from None

    def webcam(self, max_frames):
        capture = cv2.VideoCapture(0)
        if not capture.isOpened():
            raise DemoInputError("webcam: no camera could be opened (device 0)")

        def read():
            for index in range(max_frames):
                ok, frame = capture.read()
                if not ok:
                    break
                yield index, frame

        try:
            return self.frames(read(), "webcam", "webcam", 30.0, max_frames)
        finally:
            capture.release()


def _pair_json(pairs, row):
    """One hand-object pair as JSON: pixels, metres (OpenCV camera frame), radians; the object
    entries are null for a hand without an object (``has_object`` false)."""
    fields = pairs.get_fields()
    has_object = bool(fields["pred_has_object"][row])
    entry = {
        "hand_box": fields["pred_boxes"].tensor[row].tolist(),
        "object_box": fields["pred_object_boxes"].tensor[row].tolist() if has_object else None,
        "joints3d_camera": (fields["pred_joints3d"][row] + fields["pred_root3d"][row]).tolist(),
        "hand_score": fields["scores"][row].item(),
        "has_object": has_object,
        "object_score": fields["object_scores"][row].item(),
        "object_pose_valid": fields["pred_object_pose_valid"][row].item(),
    }
    for name in ("joints2d", "joints2d_conf", "joints3d", "root3d", "mano_pose", "mano_shape"):
        entry[name] = fields[f"pred_{name}"][row].tolist()
    for name in ("control_points2d", "control_points_conf", "object_R", "object_t"):
        entry[name] = fields[f"pred_{name}"][row].tolist() if has_object else None
    return entry
