"""First-Person Hand Action benchmark (FPHA, Garcia-Hernando et al., CVPR 2018), the
hand-object subset with object 6-DoF poses (juice bottle, liquid soap, milk, salt), with the
action-recognition split used by H+O (Tekin et al., CVPR 2019) and later hand-object work:

    <root>/data_split_action_recognition.txt        "Training N", "Subject_s/action/seq label"
                                                    lines, "Test N", lines
    <root>/Video_files/<subject>/<action>/<seq>/color/color_%04d.jpeg     1920x1080
    <root>/Hand_pose_annotation_v1/<subject>/<action>/<seq>/skeleton.txt
        per line: frame index, 21 joints x (x, y, z) mm in the world (depth camera) frame
    <root>/Object_6D_pose_annotation_v1/<subject>/<action>/<seq>/object_pose.txt
        per line: frame index, a 4x4 object-to-world transform (16 numbers, column-major, mm)
    <root>/Object_models/<object>_model/<object>_model.ply                metres

Conversions: world -> colour camera with the dataset's extrinsics (``FPHA_CAMERA_EXTRINSICS``,
rotation + translation in mm), projection with the colour intrinsics, mm -> metres, joints from
FPHA's order (wrist, five MCPs, then PIP, DIP, tip per finger) to manopth's. The object of a
sequence is its action's object ("open_juice_bottle" -> "juice_bottle"). No MANO fits.
"""

import logging
import os

import numpy as np
from tqdm import tqdm

from ...constants import NUM_JOINTS
from .object_models import ObjectModels
from .records import (
    SkipCounter,
    check_files_exist,
    check_layout,
    hand_annotation,
    image_size,
    object_annotation,
    register_handobj_dataset,
)

logger = logging.getLogger(__name__)

FPHA_SPLITS = ("train", "test")
FPHA_OBJECTS = ("juice_bottle", "liquid_soap", "milk", "salt")
# Colour camera intrinsics (pixels) and the world (depth camera) -> colour camera transform
# (rotation, translation in mm) published with the dataset.
FPHA_COLOR_INTRINSICS = np.array(
    [[1395.749023, 0.0, 935.732544], [0.0, 1395.749268, 540.681030], [0.0, 0.0, 1.0]]
)
FPHA_CAMERA_EXTRINSICS = np.array(
    [
        [0.999988496304, -0.00468848412856, 0.000982563360594, 25.7],
        [0.00469115935266, 0.999985218048, -0.00273845880292, 1.22],
        [-0.000969709653873, 0.00274303671904, 0.99999576807, 3.902],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
# ``joints_manopth = joints_fpha[FPHA_TO_MANOPTH]``.
FPHA_TO_MANOPTH = np.array(
    [0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20]
)
SPLIT_FILE = "data_split_action_recognition.txt"
VIDEO_DIR = "Video_files"
SKELETON_DIR = "Hand_pose_annotation_v1"
OBJECT_POSE_DIR = "Object_6D_pose_annotation_v1"
MODEL_DIR = "Object_models"


def fpha_layout():
    return [SPLIT_FILE, VIDEO_DIR, SKELETON_DIR, OBJECT_POSE_DIR, MODEL_DIR]


def fpha_object_models(root):
    folder = os.path.join(root, MODEL_DIR)
    files = {n: os.path.join(folder, f"{n}_model", f"{n}_model.ply") for n in FPHA_OBJECTS}
    return ObjectModels(lambda: {n: p for n, p in files.items() if os.path.isfile(p)})


def action_object(action):
    """Object name of an FPHA action ("open_juice_bottle" -> "juice_bottle"), or None."""
    name = action.split("_", 1)[1] if "_" in action else ""
    return name if name in FPHA_OBJECTS else None


def read_split(path):
    """{"train": [...], "test": [...]} of (subject, action, sequence) from the split file."""
    splits, current = {"train": [], "test": []}, None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("Training"):
                current = "train"
            elif line.startswith("Test"):
                current = "test"
            else:
                parts = line.split()[0].split("/")
                if current is None or len(parts) != 3:
                    raise ValueError(
                        f"{path}:{number}: expected 'Subject_s/action/sequence label' after a "
                        f"'Training' or 'Test' header, got {line!r}"
                    )
                splits[current].append(tuple(parts))
    if not splits["train"] or not splits["test"]:
        raise ValueError(f"{path}: expected 'Training' and 'Test' sections with sequences")
    return splits


def read_table(path, width):
    """{frame index: values (width,)} of an FPHA annotation text file (an empty file is an
    error: every sequence of the split is annotated)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FPHA annotation not found: {path}")
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: malformed annotation table ({e})") from None
    if table.size == 0:
        raise ValueError(f"{path}: the annotation file is empty (expected one row per frame)")
    if table.shape[1] != width + 1 or not np.isfinite(table).all():
        raise ValueError(
            f"{path}: expected rows of a frame index and {width} numbers, got {table.shape[1]} columns"
        )
    return {int(row[0]): row[1:] for row in table}


def world_to_camera(points_mm):
    """World (depth camera) points (N, 3) mm -> colour camera frame (N, 3) metres."""
    R, t = FPHA_CAMERA_EXTRINSICS[:3, :3], FPHA_CAMERA_EXTRINSICS[:3, 3]
    return (points_mm @ R.T + t) / 1000.0


def object_pose(values):
    """16 numbers of object_pose.txt -> object-model (metres) to colour camera R (3, 3), t (3,) m."""
    to_camera = FPHA_CAMERA_EXTRINSICS @ values.reshape(4, 4).T
    return to_camera[:3, :3], to_camera[:3, 3] / 1000.0


def load_fpha(root, split, models=None, dataset_name="fpha"):
    """Records (docs/design.md) of the hand-object subset of FPHA's ``split`` ("train"/"test")."""
    if split not in FPHA_SPLITS:
        raise ValueError(f"FPHA split must be one of {FPHA_SPLITS}, got {split!r}")
    check_layout(dataset_name, root, fpha_layout())
    models = models if models is not None else fpha_object_models(root)
    sequences = read_split(os.path.join(root, SPLIT_FILE))[split]
    skipped = SkipCounter()
    selected = [s for s in sequences if action_object(s[1]) is not None]
    skipped["sequences without an object pose (other actions)"] += len(sequences) - len(selected)
    missing = [
        os.path.join(folder, *s, name)
        for s in selected
        for folder, name in ((SKELETON_DIR, "skeleton.txt"), (OBJECT_POSE_DIR, "object_pose.txt"))
        if not os.path.isfile(os.path.join(root, folder, *s, name))
    ]
    missing += [
        os.path.join(MODEL_DIR, f"{n}_model", f"{n}_model.ply")
        for n in sorted({action_object(s[1]) for s in selected})
        if n not in models
    ]
    if missing:
        raise FileNotFoundError(
            f"{dataset_name}: incomplete dataset at {root}; missing: {', '.join(missing)}"
        )
    K = FPHA_COLOR_INTRINSICS
    records = []
    for subject, action, sequence in tqdm(
        selected, desc=dataset_name, unit="sequence", leave=False
    ):
        key = (subject, action, sequence)
        skeletons = read_table(
            os.path.join(root, SKELETON_DIR, *key, "skeleton.txt"), 3 * NUM_JOINTS
        )
        poses = read_table(os.path.join(root, OBJECT_POSE_DIR, *key, "object_pose.txt"), 16)
        name = action_object(action)
        model = models[name]
        color = os.path.join(root, VIDEO_DIR, *key, "color")
        size = None
        for frame in sorted(skeletons):
            if frame not in poses:
                skipped["frames without an object pose"] += 1
                continue
            skeleton = skeletons[frame].reshape(NUM_JOINTS, 3)
            if not skeleton.any():
                skipped["frames without a hand pose"] += 1
                continue
            image_path = os.path.join(color, f"color_{frame:04d}.jpeg")
            if size is None:
                size = image_size(image_path)
            joints3d = world_to_camera(skeleton)[FPHA_TO_MANOPTH]
            R, t = object_pose(poses[frame])
            records.append(
                {
                    "file_name": os.path.abspath(image_path),
                    "image_id": f"{subject}/{action}/{sequence}/{frame:04d}",
                    "height": size[0],
                    "width": size[1],
                    "sequence": f"{subject}/{action}/{sequence}",
                    "frame_index": frame,
                    "camera_K": K.astype(np.float32),
                    "annotations": [
                        hand_annotation(K, joints3d=joints3d),
                        object_annotation(name, R, t, model["points"], model, K),
                    ],
                }
            )
        skipped["frames without a hand pose"] += len(set(poses) - set(skeletons))
    check_files_exist(dataset_name, [r["file_name"] for r in records], "colour images")
    skipped.log(dataset_name, len(records))
    return records


def register_fpha(name, root, split, check=True):
    """Register FPHA's hand-object ``split`` ("train" or "test") at ``root`` as ``name``."""
    if check:
        check_layout(name, root, fpha_layout())
    models = fpha_object_models(root)
    register_handobj_dataset(
        name, lambda: load_fpha(root, split, models, dataset_name=name), root, split, models
    )
