"""Writing synthetic frames as an HO3D tree (the layout of handobj_d2/data/datasets/ho3d.py).

    <root>/train.txt, <root>/evaluation.txt             "sequence/frame_id" lines
    <root>/{train,evaluation}/<seq>/rgb/<id>.png         RGB images
    <root>/{train,evaluation}/<seq>/seg/<id>.png         hand/object segmentation (HO3D encoding)
    <root>/{train,evaluation}/<seq>/meta/<id>.pkl        HO3D annotations (OpenGL camera frame)
    <root>/evaluation_xyz.json, evaluation_verts.json    the challenge's ground truth
    <root>/models/<name>/points.xyz, textured_simple.obj (+ .mtl, texture_map.png)

Frames come in the project's conventions (OpenCV camera frame, manopth joint order, metres);
``ho3d_meta`` turns them into HO3D's: annotations in the OpenGL camera frame (x right, y up,
z backward), joints in MANO's order (``geometry.MANOPTH_TO_HO3D``), MANO with
``flat_hand_mean=True``, full 48-d axis-angle ``handPose`` whose global rotation is expressed
in the OpenGL frame, and ``handTrans`` added to the un-centred MANO output (manopth
``center_idx=None``): ``MANO(handPose, handBeta) + handTrans = handJoints3D``.

Every file is written atomically (``write_atomically``): after a kill, a file is either whole
or absent, and a frame whose meta file (written last) exists is complete.
"""

import io
import json
import os
import pickle
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ...geometry import MANOPTH_TO_HO3D, OPENGL_TO_OPENCV, matrix_to_axis_angle, points_to_box
from ...utils.io import atomic_file, write_atomically
from ..segmentation import encode_ho3d

PICKLE_PROTOCOL = 2  # HO3D's meta files are Python 2 era pickles
POINTS_PER_MODEL = 2048  # surface samples in points.xyz


@dataclass
class HandObjectFrame:
    """One rendered frame in the project's conventions (OpenCV camera frame, metres).

    camera_K (3, 3) px; mano_pose (48,) axis-angle, global rotation in the OpenCV camera frame;
    mano_shape (10,); hand_joints (21, 3) manopth order and hand_vertices (778, 3), camera
    frame; hand_rest_root (3,) the wrist joint of the shaped, unposed MANO hand (MANO's own
    frame, un-centred); object_name; object_R (3, 3), object_t (3,) map object-model points to
    the camera; object_corners (8, 3) object frame; image (H, W, 3) uint8 RGB; hand_mask,
    object_mask (H, W) bool, the visible pixels of each.
    """

    camera_K: np.ndarray
    mano_pose: np.ndarray
    mano_shape: np.ndarray
    hand_joints: np.ndarray
    hand_vertices: np.ndarray
    hand_rest_root: np.ndarray
    object_name: str
    object_R: np.ndarray
    object_t: np.ndarray
    object_corners: np.ndarray
    image: np.ndarray
    hand_mask: np.ndarray
    object_mask: np.ndarray


def _axis_angle(matrix):
    """Rotation matrix (3, 3) -> axis-angle (3,) float64 (numpy)."""
    return matrix_to_axis_angle(torch.as_tensor(matrix, dtype=torch.float64)).numpy()


def _rotation(axis_angle):
    """Axis-angle (3,) -> rotation matrix (3, 3) float64 (numpy, Rodrigues)."""
    return cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))[0]


def _f32(array):
    return np.ascontiguousarray(array, dtype=np.float32)


def object_label(name):
    """YCB class id from a YCB name ("021_bleach_cleanser" -> 21), HO3D's objLabel."""
    prefix = name.split("_", 1)[0]
    if not prefix.isdigit():
        raise ValueError(f"object name {name!r} does not start with a YCB id like '021_'")
    return int(prefix)


def hand_bounding_box(frame):
    """HO3D's handBoundingBox [x1, y1, x2, y2] px: the projected hand mesh, clipped to the
    image."""
    uvw = frame.hand_vertices @ frame.camera_K.T
    box = points_to_box(uvw[:, :2] / uvw[:, 2:])
    height, width = frame.image.shape[:2]
    return np.clip(box, 0, [width, height, width, height])


def ho3d_meta(frame, split):
    """HO3D annotation dict of a frame. ``split`` "train": full hand annotation; "evaluation":
    like HO3D's evaluation split, the root joint (3,) and handBoundingBox only."""
    flip = OPENGL_TO_OPENCV
    global_rot = flip @ _rotation(frame.mano_pose[:3])
    hand_pose = np.concatenate([_axis_angle(global_rot), frame.mano_pose[3:]])
    joints_gl = (frame.hand_joints @ flip)[MANOPTH_TO_HO3D]
    object_R = flip @ frame.object_R
    object_t = flip @ frame.object_t
    meta = {"camMat": _f32(frame.camera_K)}
    if split == "train":
        meta["handPose"] = _f32(hand_pose)
        meta["handBeta"] = _f32(frame.mano_shape)
        # The wrist joint does not move under the global rotation (MANO rotates about it).
        meta["handTrans"] = _f32(joints_gl[0] - frame.hand_rest_root)
        meta["handJoints3D"] = _f32(joints_gl)
    elif split == "evaluation":
        meta["handJoints3D"] = _f32(joints_gl[0])
        meta["handBoundingBox"] = _f32(hand_bounding_box(frame))
    else:
        raise ValueError(f"split must be 'train' or 'evaluation', got {split!r}")
    meta["objName"] = frame.object_name
    meta["objLabel"] = object_label(frame.object_name)
    meta["objRot"] = _f32(_axis_angle(object_R).reshape(3, 1))
    meta["objTrans"] = _f32(object_t)
    meta["objCorners3DRest"] = _f32(frame.object_corners)
    meta["objCorners3D"] = _f32(frame.object_corners @ object_R.T + object_t)
    return meta


def write_pickle(path, data):
    with atomic_file(path) as f:
        pickle.dump(data, f, protocol=PICKLE_PROTOCOL)


def write_image(path, image_rgb):
    """Write an RGB uint8 image (PNG, deterministic bytes)."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    if not ok:
        raise OSError(f"cannot encode image {path} as PNG")
    write_atomically(path, encoded.tobytes())


class HO3DWriter:
    """Writes frames into an HO3D tree under ``root``; ``close()`` writes the split lists and
    the evaluation ground truth (evaluation_xyz.json / evaluation_verts.json, in the order of
    evaluation.txt: joints (21, 3) MANO order and vertices (778, 3), OpenGL frame, metres)."""

    def __init__(self, root):
        self.root = root
        self.names = {"train": [], "evaluation": []}
        self.evaluation_xyz, self.evaluation_verts = [], []

    def meta_path(self, split, sequence, frame_id):
        """The frame's meta file, written last: the frame is complete when it exists."""
        return os.path.join(self.root, split, sequence, "meta", f"{frame_id}.pkl")

    def list_frame(self, split, sequence, frame_id):
        """Add a written frame to its split list (train.txt / evaluation.txt)."""
        self.names[split].append(f"{sequence}/{frame_id}")

    def write(self, split, sequence, frame_id, frame, files=True):
        """Write one frame's rgb, seg and meta files (unless ``files`` is False: a resumed run
        lists a frame written before) and list it; returns the meta dict."""
        if split not in self.names:
            raise ValueError(f"split must be 'train' or 'evaluation', got {split!r}")
        folder = os.path.join(self.root, split, sequence)
        meta = ho3d_meta(frame, split)
        if files:
            write_image(os.path.join(folder, "rgb", f"{frame_id}.png"), frame.image)
            seg = encode_ho3d(frame.hand_mask, frame.object_mask)
            write_image(os.path.join(folder, "seg", f"{frame_id}.png"), seg)
            write_pickle(self.meta_path(split, sequence, frame_id), meta)
        self.list_frame(split, sequence, frame_id)
        if split == "evaluation":
            flip = OPENGL_TO_OPENCV.diagonal()
            xyz = (frame.hand_joints * flip)[MANOPTH_TO_HO3D]
            self.evaluation_xyz.append(_f32(xyz).tolist())
            self.evaluation_verts.append(_f32(frame.hand_vertices * flip).tolist())
        return meta

    def close(self):
        for split, names in self.names.items():
            text = "".join(f"{name}\n" for name in names)
            write_atomically(os.path.join(self.root, f"{split}.txt"), text)
        if self.names["evaluation"]:
            for key, values in (("xyz", self.evaluation_xyz), ("verts", self.evaluation_verts)):
                path = os.path.join(self.root, f"evaluation_{key}.json")
                write_atomically(path, json.dumps(values))


def write_textured_obj(path, vertices, faces, uvs, texture):
    """Write a UV-mapped mesh like YCB's ``textured_simple.obj``: the .obj (vertices (V, 3) m,
    one texture coordinate (V, 2) per vertex, faces (F, 3) 0-based), its material
    ``<path>.mtl`` and the texture (uint8 RGB) as ``texture_map.png`` beside it."""
    folder, name = os.path.split(path)
    material = f"{name}.mtl"
    lines = [f"mtllib {material}", "usemtl material_0"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvs]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in np.asarray(faces) + 1]
    write_atomically(path, "\n".join(lines) + "\n")
    write_atomically(
        os.path.join(folder, material),
        "newmtl material_0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd texture_map.png\n",
    )
    write_image(os.path.join(folder, "texture_map.png"), texture)


def write_object_models(root, objects):
    """Write ``models/<name>/`` for each SyntheticObject: points.xyz (surface samples, one
    "x y z" line each, metres) and textured_simple.obj with its .mtl and texture_map.png."""
    for name, obj in objects.items():
        folder = os.path.join(root, "models", name)
        points = io.StringIO()
        np.savetxt(points, obj.sample_surface(POINTS_PER_MODEL), fmt="%.6f")
        write_atomically(os.path.join(folder, "points.xyz"), points.getvalue())
        write_textured_obj(
            os.path.join(folder, "textured_simple.obj"),
            obj.vertices,
            obj.faces,
            obj.uvs,
            obj.texture,
        )
