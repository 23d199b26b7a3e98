"""FreiHAND v2 (Zimmermann et al., ICCV 2019) in its released layout (the official toolbox,
github.com/lmb-freiburg/freihand, ``utils/fh_utils.py``):

    <root>/training/rgb/%08d.jpg        4 x 32,560 images: sample version v of frame i is image
                                        v * 32560 + i (versions gs, hom, sample, auto)
    <root>/training/mask/%08d.jpg       hand masks of the 32,560 frames (not read)
    <root>/training_K.json              per frame: intrinsics (3, 3) px
    <root>/training_xyz.json            per frame: 21 joints (21, 3) m
    <root>/training_verts.json          per frame: MANO vertices (778, 3) m
    <root>/training_mano.json           per frame: 61 MANO values, (61,) or (1, 61)
    <root>/training_scale.json          per frame: length of the reference bone (m)
    <root>/evaluation/rgb/%08d.jpg      3,960 images
    <root>/evaluation_K.json, evaluation_scale.json
    <root>/evaluation_xyz.json, evaluation_verts.json, evaluation_mano.json   released later

Conventions (checked against the toolbox): 3D in metres in the OpenCV camera frame of K
(``projectPoints``: uv = K xyz / z); joints in manopth's order (wrist; thumb, index, middle,
ring, little, each knuckle to tip), which is the project's order: no reordering; the 21
keypoints are MANO's 16 regressed joints plus the tip vertices FREIHAND_FINGERTIPS (manopth's
differ by one or three ids, a config value: MODEL.MANO.FINGERTIP_VERTICES). The 61 MANO values
are ``split_theta``'s: 48 pose (axis-angle, global rotation in the camera frame first, the 45
finger values relative to MANO's ``hands_mean``: ``flat_hand_mean=False``), 10 shape, then
``uv_root`` (2, px) and ``scale`` (1) locating the middle knuckle (joint 9) at
``((u - px) / scale, (v - py) / scale, f / scale)``. The project's MANO takes
``flat_hand_mean=True`` poses, so the loader adds the model's ``hands_mean`` (from
``mano_path``) to the 45 finger values; without a MANO model the records carry joints and
vertices only. MANO rotates about the wrist, so ``HandLayer(mano_pose, mano_shape)`` plus the
wrist of ``joints3d`` gives the camera-frame mesh.

Records: one hand annotation per image (``joints3d``, ``joints2d`` = the K-projection,
``vertices3d``, MANO labels, the hand box bounding the 2D joints), no object. Evaluation images
without released ground truth get the whole image (a crop around the hand) as their hand box.
The counts must agree: every JSON list has one entry per frame, training images are a whole
number (1-4) of sample versions of the frames, evaluation images one per frame, and every image
must exist; a smaller tree of the same layout (the project's synthetic FreiHAND set) loads the
same way.
"""

import json
import logging
import os
import re

import numpy as np

from ...constants import NUM_JOINTS, NUM_MANO_VERTICES
from .object_models import ObjectModels
from .records import (
    as_array,
    check_files_exist,
    check_layout,
    hand_annotation,
    image_size,
    register_handobj_dataset,
)

logger = logging.getLogger(__name__)

FREIHAND_SPLITS = ("training", "evaluation")
# The official toolbox's sample versions, in image-id order (``sample_version.map_id``).
SAMPLE_VERSIONS = ("gs", "hom", "sample", "auto")
# Frames of the official release (``db_size``).
FREIHAND_FRAMES = {"training": 32560, "evaluation": 3960}
# Tip vertices of FreiHAND's keypoints (thumb, index, middle, ring, little; mano_utils.py).
FREIHAND_FINGERTIPS = (744, 320, 443, 555, 672)
MANO_VALUES = 61  # 48 pose, 10 shape, uv_root (2), scale (1)
_IMAGE_NAME = re.compile(r"^(\d{8})\.jpg$")


def freihand_layout(split):
    """Paths (relative to the root) a split needs."""
    required = ["K", "xyz", "verts", "mano", "scale"] if split == "training" else ["K", "scale"]
    return [os.path.join(split, "rgb")] + [f"{split}_{kind}.json" for kind in required]


def split_mano(values):
    """FreiHAND's 61 MANO values (61,) -> pose (48,) (relative to the hand mean), shape (10,),
    uv_root (2,) px and scale (the toolbox's ``split_theta``)."""
    return values[:48], values[48:58], values[58:60], float(values[60])


def mano_root(uv_root, scale, K):
    """Middle knuckle (joint 9) position (3,) m from the MANO entry's ``uv_root`` and
    ``scale`` and the intrinsics (the toolbox's ``recover_root``, focal = mean of fx, fy)."""
    focal = 0.5 * (K[0, 0] + K[1, 1])
    return np.array([uv_root[0] - K[0, 2], uv_root[1] - K[1, 2], focal]) / scale


def read_list(path, num_frames=None):
    """The JSON list of ``path`` (one entry per frame); errors name the file and the problem,
    including a list whose length is not ``num_frames``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FreiHAND annotation not found: {path}")
    with open(path) as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list with one entry per frame")
    if num_frames is not None and len(entries) != num_frames:
        raise ValueError(
            f"{path} has {len(entries)} entries but there are {num_frames} frames (one entry "
            "per frame, as in the K file)"
        )
    return entries


def _image_ids(folder):
    """Sorted image ids of the ``%08d.jpg`` files in ``folder``."""
    return sorted(int(m.group(1)) for m in map(_IMAGE_NAME.match, os.listdir(folder)) if m)


def count_versions(split, num_frames, num_images, folder):
    """Sample versions of a split: images / frames, which must be whole (1-4 for training,
    1 for evaluation)."""
    allowed = len(SAMPLE_VERSIONS) if split == "training" else 1
    versions, rest = divmod(num_images, num_frames)
    if rest or not 1 <= versions <= allowed:
        expected = f"1 to {allowed} x {num_frames}" if allowed > 1 else f"{num_frames}"
        raise ValueError(
            f"{folder} holds {num_images} images but the annotations describe {num_frames} "
            f"frames: expected {expected} images (sample version v of frame i is image "
            f"v * {num_frames} + i)"
        )
    return versions


def _hands_mean(mano_path):
    from ...mano import load_mano_model

    return np.asarray(load_mano_model(mano_path, "right")["hands_mean"], np.float64).reshape(45)


def _optional_ground_truth(root, split, num_frames):
    """Evaluation: the released (xyz, verts) lists (both or neither) and the mano list (or
    None each)."""
    paths = [os.path.join(root, f"{split}_{kind}.json") for kind in ("xyz", "verts")]
    present = [os.path.isfile(p) for p in paths]
    if any(present) and not all(present):
        found, missing = (paths[0], paths[1]) if present[0] else (paths[1], paths[0])
        raise FileNotFoundError(
            f"{found} is present but {missing} is missing: FreiHAND's evaluation ground truth "
            "comes as both files; add the missing one or remove both"
        )
    xyz, verts = [read_list(p, num_frames) if all(present) else None for p in paths]
    mano_path = os.path.join(root, f"{split}_mano.json")
    mano = read_list(mano_path, num_frames) if os.path.isfile(mano_path) else None
    return xyz, verts, mano


def _hand(i, K, xyz, verts, mano, hands_mean, paths, box):
    """Hand annotation of frame ``i``."""
    if xyz is None:
        return hand_annotation(K, bbox=box)
    joints = as_array(xyz[i], (NUM_JOINTS, 3), f"entry {i}", paths["xyz"])
    pose = shape = None
    if mano is not None and hands_mean is not None:
        values = as_array(mano[i], np.shape(mano[i]), f"entry {i}", paths["mano"])
        if values.size != MANO_VALUES:
            raise ValueError(
                f"{paths['mano']}: entry {i} has {values.size} values, expected {MANO_VALUES} "
                "(48 pose, 10 shape, uv_root, scale)"
            )
        pose, shape, _, _ = split_mano(values.reshape(MANO_VALUES))
        pose = np.concatenate([pose[:3], pose[3:] + hands_mean])
    annotation = hand_annotation(K, joints3d=joints, mano_pose=pose, mano_shape=shape)
    if verts is not None:
        vertices = as_array(verts[i], (NUM_MANO_VERTICES, 3), f"entry {i}", paths["verts"])
        annotation["vertices3d"] = vertices.astype(np.float32)
    return annotation


def load_freihand(root, split, mano_path="", dataset_name="freihand"):
    """Records (docs/design.md) of one FreiHAND split ("training" or "evaluation"), one per
    image, in image-id order. ``mano_path``: MANO_RIGHT.pkl (or its folder) whose hands_mean
    turns FreiHAND's MANO poses into the project's convention; "" (none): no MANO labels."""
    if split not in FREIHAND_SPLITS:
        raise ValueError(f"FreiHAND split must be one of {FREIHAND_SPLITS}, got {split!r}")
    check_layout(dataset_name, root, freihand_layout(split))
    paths = {
        kind: os.path.join(root, f"{split}_{kind}.json")
        for kind in ("K", "xyz", "verts", "mano", "scale")
    }
    Ks = read_list(paths["K"])
    num_frames = len(Ks)
    scales = read_list(paths["scale"], num_frames)
    if split == "training":
        xyz, verts, mano = (read_list(paths[k], num_frames) for k in ("xyz", "verts", "mano"))
    else:
        xyz, verts, mano = _optional_ground_truth(root, split, num_frames)
    folder = os.path.join(root, split, "rgb")
    image_ids = _image_ids(folder)
    versions = count_versions(split, num_frames, len(image_ids), folder)
    files = [os.path.join(folder, f"{i:08d}.jpg") for i in range(versions * num_frames)]
    check_files_exist(dataset_name, files, what=f"images of {split}/rgb")
    hands_mean = _hands_mean(mano_path) if mano_path and mano is not None else None
    if mano is not None and hands_mean is None:
        logger.info(f"{dataset_name}: no MANO model given (mano_path): no MANO labels")
    height, width = image_size(files[0])
    whole_image = [0.0, 0.0, float(width), float(height)]
    frames = []
    for i in range(num_frames):
        K = as_array(Ks[i], (3, 3), f"entry {i}", paths["K"])
        scale = as_array(scales[i], np.shape(scales[i]), f"entry {i}", paths["scale"])
        if scale.size != 1:
            raise ValueError(f"{paths['scale']}: entry {i} must be one number (metres)")
        hand = _hand(i, K, xyz, verts, mano, hands_mean, paths, whole_image)
        frames.append((K, float(scale.reshape(())), hand))
    records = []
    for version in range(versions):
        name = SAMPLE_VERSIONS[version] if split == "training" else split
        for i, (K, scale, hand) in enumerate(frames):
            image = version * num_frames + i
            records.append(
                {
                    "file_name": os.path.abspath(files[image]),
                    "image_id": f"{split}/{image:08d}",
                    "height": height,
                    "width": width,
                    "sequence": name,
                    "frame_index": i,
                    "sample_version": name,
                    "camera_K": K.astype(np.float32),
                    "reference_bone_length": scale,
                    "annotations": [dict(hand)],
                }
            )
    logger.info(
        f"{dataset_name}: {len(records)} records ({num_frames} frames x {versions} sample "
        "versions)"
    )
    return records


def register_freihand(name, root, split, mano_path=None, check=True):
    """Register the FreiHAND tree at ``root`` (split "training" or "evaluation") as dataset
    ``name``. ``mano_path``: MANO_RIGHT.pkl (or its folder) for the MANO labels; None reads
    ``$HANDOBJ_MANO_PATH`` when the dataset is loaded. The metadata says the hand predictions
    go to FreiHAND's submission format (``hand_submission_format``) and which tip vertices the
    keypoints use."""
    if check:
        check_layout(name, root, freihand_layout(split))

    def load():
        path = os.getenv("HANDOBJ_MANO_PATH", "") if mano_path is None else mano_path
        return load_freihand(root, split, path, dataset_name=name)

    register_handobj_dataset(
        name,
        load,
        root,
        split,
        ObjectModels(dict),
        hand_submission_format="freihand",
        fingertip_vertices=FREIHAND_FINGERTIPS,
    )
