"""HO3D v2 / v3 (Hampali et al., CVPR 2020) in its released layout:

    <root>/train.txt, <root>/evaluation.txt                "sequence/frame_id" per line
    <root>/{train,evaluation}/<seq>/rgb/<id>.png|jpg        v2: png, v3: jpg
    <root>/{train,evaluation}/<seq>/meta/<id>.pkl           annotations (OpenGL camera frame)
    <root>/train/<seq>/seg/<id>.png|jpg                     hand/object segmentation (optional;
                                                            or segr/, see SEGMENTATION_FOLDERS)
    <root>/models/<name>/points.xyz                         YCB object models, metres

Conversions: 3D points and rotations go from OpenGL to OpenCV (``diag(1, -1, -1)``; the MANO
global rotation becomes ``diag(1, -1, -1) @ R_gl``), joints from MANO's order to manopth's
(``geometry.HO3D_TO_MANOPTH``). Train frames: the hand box bounds the projected joints.
Evaluation frames have the wrist (``root3d``) and HO3D's ``handBoundingBox``, plus ``joints3d``
and ``vertices3d`` where the challenge's released ground truth (``evaluation_xyz.json``,
``evaluation_verts.json``, both or neither) lies at the root. Every frame's image must exist
(checked when loading, one directory listing per sequence). The object
box bounds the projected model points; control points are the 21 points of
``objCorners3DRest``'s box. The project's synthetic sets are HO3D trees read by the same code.
"""

import json
import logging
import os
import pickle

import cv2
import numpy as np
from tqdm import tqdm

from ...constants import NUM_JOINTS, NUM_MANO_VERTICES
from ...geometry import HO3D_TO_MANOPTH, OPENGL_TO_OPENCV, opengl_to_opencv
from .object_models import YCB_SYMMETRIC_OBJECTS, ObjectModels, model_folder_files
from .records import (
    SkipCounter,
    as_array,
    check_files_exist,
    check_layout,
    hand_annotation,
    image_size,
    object_annotation,
    register_handobj_dataset,
)

logger = logging.getLogger(__name__)

HO3D_SPLITS = ("train", "evaluation")
HO3D_IMAGE_EXTENSIONS = {"v2": ".png", "v3": ".jpg"}
# Objects of the evaluation split never seen in training (reported apart).
HO3D_UNSEEN_OBJECTS = {"v2": ("019_pitcher_base",), "v3": ()}
SEGMENTATION_EXTENSIONS = (".png", ".jpg")  # by preference
# Where HO3D releases keep a train sequence's segmentation (relative to the root; the first
# folder that exists wins): seg/ in the sequence (HO3D v2), segr/ in the sequence (H2O3D), and
# HO3D v3's separate segmentation archive, unpacked at the root as segr/<split>/<seq>/seg/.
# All use HO3D's encoding (object in the green channel, hand in the blue one).
SEGMENTATION_FOLDERS = (
    ("{split}", "{sequence}", "seg"),
    ("{split}", "{sequence}", "segr"),
    ("segr", "{split}", "{sequence}", "seg"),
)


def ho3d_layout(split):
    """Paths (relative to the root) a split needs."""
    return [f"{split}.txt", split, "models"]


def ho3d_object_models(root):
    """Lazy YCB models of an HO3D tree (``models/<name>/points.xyz``)."""
    return ObjectModels(
        model_folder_files(os.path.join(root, "models"), "points.xyz"), YCB_SYMMETRIC_OBJECTS
    )


def read_split_list(path):
    """[(sequence, frame_id)] from an HO3D split list ("sequence/frame_id" lines)."""
    frames = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("/")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{path}:{number}: expected 'sequence/frame_id', got {line!r}")
            frames.append((parts[0], parts[1]))
    if not frames:
        raise ValueError(f"{path}: the split list is empty")
    return frames


def read_meta(path):
    """HO3D annotation dict of one frame (a Python 2 era pickle)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HO3D annotation not found: {path}")
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
    except Exception as e:  # unpickling raises many types for broken files
        raise ValueError(f"{path}: cannot read the HO3D annotation pickle ({e!r})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a dict of annotations, got {type(meta).__name__}")
    return meta


def _field(meta, key, shape, path):
    if key not in meta:
        raise ValueError(f"{path}: annotation field '{key}' is missing")
    return as_array(meta[key], shape, key, path)


def _absent(meta, key, path):
    """True for a field HO3D leaves None (no such annotation); a missing key is malformed."""
    if key not in meta:
        raise ValueError(f"{path}: annotation field '{key}' is missing")
    return meta[key] is None


def _rotation(axis_angle):
    return cv2.Rodrigues(np.asarray(axis_angle, np.float64).reshape(3, 1))[0]


def segmentation_files(root, split, sequence):
    """{frame_id: path} of a sequence's segmentation files, from the first folder of
    SEGMENTATION_FOLDERS that exists (one directory listing); {} when none does."""
    for parts in SEGMENTATION_FOLDERS:
        folder = os.path.join(root, *(p.format(split=split, sequence=sequence) for p in parts))
        if os.path.isdir(folder):
            names = os.listdir(folder)
            files = {}
            for extension in reversed(SEGMENTATION_EXTENSIONS):
                files.update(
                    {
                        n[: -len(extension)]: os.path.join(folder, n)
                        for n in names
                        if n.endswith(extension)
                    }  # fmt: skip
                )
            return files
    return {}


def read_challenge_ground_truth(root, num_frames):
    """The evaluation split's released ground truth (``evaluation_xyz.json``,
    ``evaluation_verts.json`` at the root, in evaluation.txt order, OpenGL frame, MANO joint
    order) as OpenCV-frame joints (N, 21, 3) in manopth order and vertices (N, 778, 3), metres;
    None when both files are absent. The challenge releases them together, and the evaluator
    needs both (joint and mesh errors): one without the other is an error."""
    paths = [os.path.join(root, f"evaluation_{kind}.json") for kind in ("xyz", "verts")]
    present = [os.path.isfile(p) for p in paths]
    if not any(present):
        return None
    if not all(present):
        found, missing = (paths[0], paths[1]) if present[0] else (paths[1], paths[0])
        raise FileNotFoundError(
            f"{found} is present but {missing} is missing: the HO3D challenge's ground truth "
            "comes as both files; add the missing one or remove both"
        )
    arrays = []
    for path, shape in zip(paths, ((NUM_JOINTS, 3), (NUM_MANO_VERTICES, 3))):
        with open(path) as f:
            try:
                array = np.asarray(json.load(f), dtype=np.float64)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}: cannot read the challenge ground truth ({e})") from None
        if array.shape != (num_frames,) + shape:
            raise ValueError(
                f"{path}: expected {num_frames} entries of shape {shape} (one per line of "
                f"evaluation.txt), got an array of shape {array.shape}"
            )
        arrays.append(opengl_to_opencv(array))
    return arrays[0][:, HO3D_TO_MANOPTH], arrays[1]


def _hand(meta, split, K, path, skipped, ground_truth=None):
    """Hand annotation of a frame (OpenCV frame, manopth order), or None (counted).
    ``ground_truth``: (joints (21, 3), vertices (778, 3)) of an evaluation frame, if released."""
    if _absent(meta, "handJoints3D", path):
        skipped["frames without a hand annotation"] += 1
        return None
    if split == "evaluation":
        root = opengl_to_opencv(_field(meta, "handJoints3D", (3,), path))
        box = _field(meta, "handBoundingBox", (4,), path)
        if ground_truth is None:
            return hand_annotation(K, bbox=box, root3d=root)
        annotation = hand_annotation(K, joints3d=ground_truth[0], bbox=box, root3d=root)
        annotation["vertices3d"] = ground_truth[1].astype(np.float32)
        return annotation
    joints = opengl_to_opencv(_field(meta, "handJoints3D", (NUM_JOINTS, 3), path))
    joints = joints[HO3D_TO_MANOPTH]
    if _absent(meta, "handPose", path) or _absent(meta, "handBeta", path):
        skipped["train frames without MANO parameters (kept, joints only)"] += 1
        return hand_annotation(K, joints3d=joints)
    pose = _field(meta, "handPose", (48,), path).copy()
    pose[:3] = cv2.Rodrigues(OPENGL_TO_OPENCV @ _rotation(pose[:3]))[0].reshape(3)
    shape = _field(meta, "handBeta", (10,), path)
    return hand_annotation(K, joints3d=joints, mano_pose=pose, mano_shape=shape)


def _object(meta, K, models, root, path, skipped):
    """Object annotation (OpenCV frame), or None (counted)."""
    if _absent(meta, "objRot", path) or _absent(meta, "objName", path):
        skipped["frames without an object annotation"] += 1
        return None
    name = meta["objName"]
    if not isinstance(name, str):
        raise ValueError(f"{path}: 'objName' must be a string, got {type(name).__name__}")
    if name not in models:
        expected = os.path.join(root, "models", name, "points.xyz")
        raise FileNotFoundError(f"{path}: no model for object '{name}' ({expected} is missing)")
    axis_angle = as_array(meta["objRot"], np.shape(meta["objRot"]), "objRot", path)
    if axis_angle.size != 3:
        raise ValueError(
            f"{path}: 'objRot' must hold 3 numbers (axis-angle), got {axis_angle.shape}"
        )
    R = OPENGL_TO_OPENCV @ _rotation(axis_angle)
    t = OPENGL_TO_OPENCV @ _field(meta, "objTrans", (3,), path)
    corners = _field(meta, "objCorners3DRest", (8, 3), path)
    return object_annotation(name, R, t, corners, models[name], K)


def load_ho3d(root, split, version="v2", models=None, dataset_name="ho3d"):
    """Records (docs/design.md) of one HO3D split. ``models``: the tree's ObjectModels
    (shared with the metadata); read from ``<root>/models`` when None."""
    if split not in HO3D_SPLITS:
        raise ValueError(f"HO3D split must be one of {HO3D_SPLITS}, got {split!r}")
    if version not in HO3D_IMAGE_EXTENSIONS:
        raise ValueError(
            f"HO3D version must be one of {sorted(HO3D_IMAGE_EXTENSIONS)}, got {version!r}"
        )
    check_layout(dataset_name, root, ho3d_layout(split))
    models = models if models is not None else ho3d_object_models(root)
    frames = read_split_list(os.path.join(root, f"{split}.txt"))
    extension = HO3D_IMAGE_EXTENSIONS[version]
    check_files_exist(
        dataset_name,
        [os.path.join(root, split, seq, "rgb", frame + extension) for seq, frame in frames],
        what=f"images of {split}.txt",
    )
    ground_truth = read_challenge_ground_truth(root, len(frames)) if split == "evaluation" else None
    sizes, segmentations, records, skipped = {}, {}, [], SkipCounter()
    for position, (sequence, frame_id) in enumerate(
        tqdm(frames, desc=f"{dataset_name}", unit="frame", mininterval=5, leave=False)
    ):
        folder = os.path.join(root, split, sequence)
        image_path = os.path.join(folder, "rgb", frame_id + extension)
        if sequence not in sizes:
            sizes[sequence] = image_size(image_path)
        meta_path = os.path.join(folder, "meta", frame_id + ".pkl")
        meta = read_meta(meta_path)
        K = _field(meta, "camMat", (3, 3), meta_path)
        annotations = [
            a
            for a in (
                _hand(
                    meta,
                    split,
                    K,
                    meta_path,
                    skipped,
                    None
                    if ground_truth is None
                    else (ground_truth[0][position], ground_truth[1][position]),
                ),  # fmt: skip
                _object(meta, K, models, root, meta_path, skipped),
            )
            if a is not None
        ]
        height, width = sizes[sequence]
        record = {
            "file_name": os.path.abspath(image_path),
            "image_id": f"{sequence}/{frame_id}",
            "height": height,
            "width": width,
            "sequence": sequence,
            "frame_index": int(frame_id) if frame_id.isdigit() else position,
            "camera_K": K.astype(np.float32),
            "annotations": annotations,
        }
        if split == "train":
            if sequence not in segmentations:
                segmentations[sequence] = segmentation_files(root, split, sequence)
            seg_path = segmentations[sequence].get(frame_id)
            if seg_path is not None:
                record["segmentation_file"] = os.path.abspath(seg_path)
                record["segmentation_format"] = "ho3d"
            else:
                skipped["train frames without a segmentation file (kept, box as mask)"] += 1
        records.append(record)
    skipped.log(dataset_name, len(records))
    return records


def register_ho3d(name, root, split, version="v2", unseen_objects=None, check=True):
    """Register the HO3D tree at ``root`` (split "train" or "evaluation", version "v2"/"v3",
    which picks the image extension and the default unseen objects) as dataset ``name``.
    ``check``: verify the layout now (else when the dataset is first loaded)."""
    if check:
        check_layout(name, root, ho3d_layout(split))
    models = ho3d_object_models(root)
    register_handobj_dataset(
        name,
        lambda: load_ho3d(root, split, version, models=models, dataset_name=name),
        root,
        split,
        models,
        HO3D_UNSEEN_OBJECTS[version] if unseen_objects is None else unseen_objects,
        ho3d_version=version,
    )
