"""DexYCB (Chao et al., CVPR 2021) in its released layout, with the "s0" split of the
dex-ycb-toolkit:

    <root>/<subject>/<sequence>/meta.yml                     serials, num_frames, ycb_ids,
                                                            ycb_grasp_ind, mano_sides, mano_calib
    <root>/<subject>/<sequence>/<serial>/color_%06d.jpg      640x480 colour images
    <root>/<subject>/<sequence>/<serial>/labels_%06d.npz     joint_3d (1, 21, 3) m, joint_2d
                                                            (1, 21, 2) px (-1: no hand),
                                                            pose_y (n, 3, 4), pose_m (1, 51)
    <root>/calibration/intrinsics/<serial>_640x480.yml       color: fx, fy, ppx, ppy
    <root>/calibration/mano_<mano_calib>/mano.yml            betas (10)
    <root>/models/<ycb name>/textured_simple.obj             YCB models, metres

s0: every subject and camera; each subject has exactly 100 sequences (as the toolkit asserts);
sorted by name, those at positions i with i % 5 == 4 go to val (the first two subjects) and
test (the other eight), the others to train.

Everything is already in the OpenCV camera frame, metres, joints in manopth's order. Kept
frames, by ``protocol``:
    "official": the toolkit's hand pose benchmark (hpe_eval.py): every frame of the split with a
        hand (``joint_3d`` not all -1), left- and right-hand sequences; the grasped object
        (``ycb_ids[ycb_grasp_ind]``) is annotated where it is posed.
    "grasp": right-hand sequences only, frames with a hand whose grasped object is posed and
        within ``max_grasp_distance`` of a hand joint (the object in the grasp, not on the
        table). Its numbers are not comparable with the toolkit's benchmark.
``pose_m`` holds MANO's global rotation, 45 PCA coefficients of the finger pose
(``flat_hand_mean=False``) and a translation; with a MANO model file (``mano_path``) the loader
turns a right hand's into the project's full 48-d axis-angle pose (``flat_hand_mean=True``);
without one, and for left hands (the project's MANO layer is right-handed), the records carry
joints only. Every kept frame's colour image must exist (checked at load time).
"""

import itertools
import logging
import os

import numpy as np
import yaml
from tqdm import tqdm

from ...constants import NUM_JOINTS
from .object_models import YCB_SYMMETRIC_OBJECTS, ObjectModels, model_folder_files
from .records import (
    SkipCounter,
    as_array,
    check_files_exist,
    check_layout,
    hand_annotation,
    joints_valid,
    object_annotation,
    register_handobj_dataset,
)

logger = logging.getLogger(__name__)

DEXYCB_SUBJECTS = (
    "20200709-subject-01",
    "20200813-subject-02",
    "20200820-subject-03",
    "20200903-subject-04",
    "20200908-subject-05",
    "20200918-subject-06",
    "20200928-subject-07",
    "20201002-subject-08",
    "20201015-subject-09",
    "20201022-subject-10",
)
DEXYCB_SERIALS = (
    "836212060125",
    "839512060362",
    "840412060917",
    "841412060263",
    "932122060857",
    "932122060861",
    "932122061900",
    "932122062010",
)
# ycb_ids in meta.yml index this list from 1.
DEXYCB_YCB_CLASSES = (
    "002_master_chef_can",
    "003_cracker_box",
    "004_sugar_box",
    "005_tomato_soup_can",
    "006_mustard_bottle",
    "007_tuna_fish_can",
    "008_pudding_box",
    "009_gelatin_box",
    "010_potted_meat_can",
    "011_banana",
    "019_pitcher_base",
    "021_bleach_cleanser",
    "024_bowl",
    "025_mug",
    "035_power_drill",
    "036_wood_block",
    "037_scissors",
    "040_large_marker",
    "051_large_clamp",
    "052_extra_large_clamp",
    "061_foam_brick",
)
DEXYCB_SPLITS = ("train", "val", "test")
DEXYCB_PROTOCOLS = ("official", "grasp")
DEXYCB_SEQUENCES_PER_SUBJECT = 100
# s0 ("default"): subjects of each split and whether a sequence position goes to val/test.
_S0_SUBJECTS = {"train": range(10), "val": range(2), "test": range(2, 10)}
DEXYCB_IMAGE_SIZE = (480, 640)  # height, width
MAX_GRASP_DISTANCE = 0.02  # metres, closest hand joint to the grasped object's 3D box


def _s0_sequence_selected(split, position):
    held_out = position % 5 == 4
    return held_out if split in ("val", "test") else not held_out


def dexycb_layout(split):
    subjects = [DEXYCB_SUBJECTS[i] for i in _S0_SUBJECTS[split]]
    intrinsics = [
        os.path.join("calibration", "intrinsics", f"{s}_640x480.yml") for s in DEXYCB_SERIALS
    ]
    return subjects + intrinsics + ["models"]


def dexycb_object_models(root):
    return ObjectModels(
        model_folder_files(os.path.join(root, "models"), "textured_simple.obj"),
        YCB_SYMMETRIC_OBJECTS,
    )


def read_yaml(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DexYCB file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping")
    return data


def _key(data, key, path):
    if key not in data:
        raise ValueError(f"{path}: field '{key}' is missing")
    return data[key]


def read_intrinsics(path):
    """Colour intrinsics K (3, 3) of a DexYCB calibration file."""
    color = _key(read_yaml(path), "color", path)
    try:
        fx, fy, cx, cy = (float(color[k]) for k in ("fx", "fy", "ppx", "ppy"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: 'color' needs numeric fx, fy, ppx, ppy") from None
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def read_labels(path):
    """The arrays of a labels_%06d.npz file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DexYCB label file not found: {path}")
    keys = ("joint_3d", "joint_2d", "pose_y", "pose_m")
    try:
        with np.load(path) as data:
            missing = [k for k in keys if k not in data.files]
            labels = {} if missing else {k: data[k] for k in keys}
    except Exception as e:  # zip / pickle errors of a broken file
        raise ValueError(f"{path}: cannot read the label file ({e!r})") from None
    if missing:
        raise ValueError(f"{path}: label array(s) {', '.join(missing)} missing")
    return labels


class ManoPCA:
    """Finger PCA of a MANO model: DexYCB's 45 PCA coefficients -> 45 axis-angle values in the
    flat-hand-mean convention (coefficients @ components + hands_mean)."""

    def __init__(self, mano_path):
        from ...mano import load_mano_model

        model = load_mano_model(mano_path, "right")
        self.components = np.asarray(model["hands_components"], np.float64)[:45]
        self.mean = np.asarray(model["hands_mean"], np.float64).reshape(45)

    def __call__(self, coefficients):
        return coefficients @ self.components + self.mean


def _grasp_distance(joints, R, t, corners):
    """Distance (m) from the closest joint to the object's axis-aligned 3D box."""
    local = (joints - t) @ R  # object frame
    lo, hi = corners.min(0), corners.max(0)
    outside = np.maximum(np.maximum(lo - local, local - hi), 0.0)
    return float(np.linalg.norm(outside, axis=1).min())


def _split_sequences(root, split, dataset_name):
    """[(subject, sequence)] of the s0 ``split``; a subject without exactly 100 sequences is an
    error (the positions that pick val/test would shift)."""
    sequences = []
    for index in _S0_SUBJECTS[split]:
        subject = DEXYCB_SUBJECTS[index]
        folder = os.path.join(root, subject)
        names = sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))
        if len(names) != DEXYCB_SEQUENCES_PER_SUBJECT:
            raise ValueError(
                f"{dataset_name}: {folder} has {len(names)} sequence folders; DexYCB has "
                f"{DEXYCB_SEQUENCES_PER_SUBJECT} per subject and s0 picks val/test by position, "
                "so an incomplete subject would shift the split (re-extract its archive)"
            )
        sequences += [(subject, n) for i, n in enumerate(names) if _s0_sequence_selected(split, i)]
    return sequences


def _read_sequence(root, subject, sequence, models):
    """What every frame of one sequence shares, from its meta.yml and MANO calibration: a dict
    of folder, meta_path, num_frames, right (bool), ycb_ids, grasp (index of the grasped object
    in ycb_ids), object_name, model (its entry of ``models``), betas (10,)."""
    folder = os.path.join(root, subject, sequence)
    meta_path = os.path.join(folder, "meta.yml")
    meta = read_yaml(meta_path)
    ycb_ids = _key(meta, "ycb_ids", meta_path)
    grasp = int(_key(meta, "ycb_grasp_ind", meta_path))
    name = DEXYCB_YCB_CLASSES[int(ycb_ids[grasp]) - 1]
    if name not in models:
        raise FileNotFoundError(
            f"{meta_path}: no model for object '{name}' "
            f"({os.path.join(root, 'models', name, 'textured_simple.obj')} is missing)"
        )
    calib = _key(meta, "mano_calib", meta_path)[0]
    betas_path = os.path.join(root, "calibration", f"mano_{calib}", "mano.yml")
    betas = as_array(_key(read_yaml(betas_path), "betas", betas_path), (10,), "betas", betas_path)
    return {
        "folder": folder,
        "meta_path": meta_path,
        "num_frames": int(_key(meta, "num_frames", meta_path)),
        "right": _key(meta, "mano_sides", meta_path)[0] == "right",
        "ycb_ids": ycb_ids,
        "grasp": grasp,
        "object_name": name,
        "model": models[name],
        "betas": betas,
    }


def _frame_annotations(seq, label_path, K, protocol, max_grasp_distance, pca):
    """The annotations of one frame of one camera (``seq``: ``_read_sequence``), or the reason
    (a SkipCounter key) it is not kept."""
    labels = read_labels(label_path)
    joints3d = np.asarray(labels["joint_3d"], np.float64).reshape(-1, NUM_JOINTS, 3)[0]
    if not joints_valid(joints3d):
        return "frames without a hand"
    pose_y = as_array(labels["pose_y"], (len(seq["ycb_ids"]), 3, 4), "pose_y", label_path)
    R, t = pose_y[seq["grasp"], :, :3], pose_y[seq["grasp"], :, 3]
    posed = bool(pose_y[seq["grasp"]].any())
    if protocol == "grasp" and not posed:
        return "frames without a pose of the grasped object"
    if protocol == "grasp" and _grasp_distance(joints3d, R, t, seq["model"]["points"]) > (
        max_grasp_distance
    ):
        return "frames with the object out of the grasp"
    joints2d = as_array(labels["joint_2d"], (1, NUM_JOINTS, 2), "joint_2d", label_path)
    mano = {}
    if pca is not None and seq["right"]:
        pose_m = as_array(labels["pose_m"], (1, 51), "pose_m", label_path)[0]
        mano = {"mano_pose": np.concatenate([pose_m[:3], pca(pose_m[3:48])]),
                "mano_shape": seq["betas"]}  # fmt: skip
    annotations = [hand_annotation(K, joints3d=joints3d, joints2d=joints2d[0], **mano)]
    if posed:
        model = seq["model"]
        annotations.append(object_annotation(seq["object_name"], R, t, model["points"], model, K))
    return annotations


def load_dexycb(
    root,
    split,
    models=None,
    mano_path="",
    protocol="official",
    max_grasp_distance=MAX_GRASP_DISTANCE,
    dataset_name="dexycb",
):
    """Records (docs/design.md) of the s0 ``split`` ("train", "val", "test") of DexYCB, frames
    kept by ``protocol`` ("official" or "grasp", see the module)."""
    if split not in DEXYCB_SPLITS:
        raise ValueError(f"DexYCB split must be one of {DEXYCB_SPLITS}, got {split!r}")
    if protocol not in DEXYCB_PROTOCOLS:
        raise ValueError(f"DexYCB protocol must be one of {DEXYCB_PROTOCOLS}, got {protocol!r}")
    check_layout(dataset_name, root, dexycb_layout(split))
    models = models if models is not None else dexycb_object_models(root)
    pca = ManoPCA(mano_path) if mano_path else None
    intrinsics = {
        s: read_intrinsics(os.path.join(root, "calibration", "intrinsics", f"{s}_640x480.yml"))
        for s in DEXYCB_SERIALS
    }
    sequences = _split_sequences(root, split, dataset_name)
    records, skipped = [], SkipCounter()
    for subject, sequence in tqdm(sequences, desc=dataset_name, unit="sequence", leave=False):
        seq = _read_sequence(root, subject, sequence, models)
        if protocol == "grasp" and not seq["right"]:
            skipped["frames of left-hand sequences"] += seq["num_frames"] * len(DEXYCB_SERIALS)
            continue
        for serial, frame in itertools.product(DEXYCB_SERIALS, range(seq["num_frames"])):
            label_path = os.path.join(seq["folder"], serial, f"labels_{frame:06d}.npz")
            annotations = _frame_annotations(
                seq, label_path, intrinsics[serial], protocol, max_grasp_distance, pca
            )
            if isinstance(annotations, str):
                skipped[annotations] += 1
                continue
            if len(annotations) == 1:  # the grasped object has no pose in this frame
                skipped["frames without a pose of the grasped object (kept, hand only)"] += 1
            records.append(_record(seq, subject, sequence, serial, frame, intrinsics[serial],
                                   annotations))  # fmt: skip
    check_files_exist(dataset_name, [r["file_name"] for r in records], "colour images")
    if pca is None and records:
        logger.info(f"{dataset_name}: no MANO model given (mano_path): records carry joints only")
    skipped.log(dataset_name, len(records))
    return records


def _record(seq, subject, sequence, serial, frame, K, annotations):
    """The record (docs/design.md) of one frame of one camera."""
    height, width = DEXYCB_IMAGE_SIZE
    return {
        "file_name": os.path.abspath(os.path.join(seq["folder"], serial, f"color_{frame:06d}.jpg")),
        "image_id": f"{subject}/{sequence}/{serial}/{frame:06d}",
        "height": height,
        "width": width,
        "sequence": f"{subject}/{sequence}/{serial}",
        "frame_index": frame,
        "camera_K": K.astype(np.float32),
        "annotations": annotations,
    }


def register_dexycb(
    name,
    root,
    split,
    mano_path=None,
    protocol="official",
    max_grasp_distance=MAX_GRASP_DISTANCE,
    check=True,
):
    """Register the s0 ``split`` of the DexYCB tree at ``root`` (frames kept by ``protocol``,
    "official" or "grasp") as dataset ``name``.
    ``mano_path``: MANO_RIGHT.pkl (or its folder) to turn ``pose_m`` into MANO labels; None
    reads ``$HANDOBJ_MANO_PATH`` when the dataset is loaded."""
    if check:
        check_layout(name, root, dexycb_layout(split))
    models = dexycb_object_models(root)

    def load():
        path = os.getenv("HANDOBJ_MANO_PATH", "") if mano_path is None else mano_path
        return load_dexycb(
            root, split, models, path, protocol, max_grasp_distance, dataset_name=name
        )

    register_handobj_dataset(name, load, root, split, models, dexycb_protocol=protocol)
