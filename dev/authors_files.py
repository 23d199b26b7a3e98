"""The authors' preprocessed training files (``ho3d-process``: ``train.txt``, ``train_K.json``,
``train_joint.json``, ``train_mano.json``, ``train_obj.json``, ``train_segLabel/``), written from
an HO3D-format tree (HO3D v2's ``train/<seq>/{rgb,meta,seg}``, ``models/<obj>/points.xyz``),
as ``dataset/ho3d.py`` reads them in train mode:

* ``train_K.json``: per frame the 3x3 intrinsics;
* ``train_joint.json``: the 21 3D joints (m), OpenCV camera frame (their dataset projects them
  with K as they are), manopth order (``geometry.HO3D_TO_MANOPTH``; their network's 3D joints
  come out in that order);
* ``train_mano.json``: ``handPose`` (48) then ``handBeta`` (10) as HO3D gives them (global
  rotation in HO3D's OpenGL frame: their ``data_aug`` changes it to OpenCV);
* ``train_obj.json``: the 21 control points of the box of ``points.xyz`` in their order
  (``RELEASED_CONTROL_POINT_ORDER``), posed (``objRot``, ``objTrans``, OpenGL -> OpenCV) and
  projected, pixels;
* ``train_segLabel/<seq>/<id>.png``: 8-bit, 255 on the object, 0 elsewhere, image resolution.
"""

import json
import os
import pickle

import cv2
import numpy as np
from PIL import Image

from handobj_d2.data.segmentation import decode_segmentation
from handobj_d2.geometry import HO3D_TO_MANOPTH, box_control_points
from handobj_d2.modeling.released_checkpoint import RELEASED_CONTROL_POINT_ORDER

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def released_control_points(points):
    """(V, 3) object points -> their 21 control points (21, 3), their order."""
    ours = box_control_points(np.stack([points.min(0), points.max(0)]))
    theirs = np.empty_like(ours)
    theirs[list(RELEASED_CONTROL_POINT_ORDER)] = ours
    return theirs


def frame_targets(root, name, models):
    """(K, joints3d, mano, control points 2D) of frame ``name`` ("seq/id") of ``root``'s train
    split, as the files above hold them."""
    seq, fid = name.split("/")
    path = os.path.join(root, "train", seq, "meta", fid + ".pkl")
    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    K = np.asarray(meta["camMat"], dtype=np.float64)
    joints = (np.asarray(meta["handJoints3D"], dtype=np.float64) @ OPENGL_TO_OPENCV)[
        HO3D_TO_MANOPTH
    ]
    mano = np.concatenate([np.ravel(meta["handPose"]), np.ravel(meta["handBeta"])])
    if meta["objName"] not in models:
        xyz = os.path.join(root, "models", meta["objName"], "points.xyz")
        models[meta["objName"]] = np.loadtxt(xyz, ndmin=2)[:, :3]
    R = OPENGL_TO_OPENCV @ cv2.Rodrigues(np.asarray(meta["objRot"], np.float64).reshape(3))[0]
    t = OPENGL_TO_OPENCV @ np.asarray(meta["objTrans"], np.float64).reshape(3)
    cam = released_control_points(models[meta["objName"]]) @ R.T + t
    uv = cam @ K.T
    return K, joints, mano, uv[:, :2] / uv[:, 2:]


def write_authors_training_files(root, out, names=None):
    """Write the files above under ``out`` for ``names`` (default: ``root``/train.txt).
    Returns the frame names."""
    if names is None:
        with open(os.path.join(root, "train.txt")) as f:
            names = [line.strip() for line in f if line.strip()]
    os.makedirs(out, exist_ok=True)
    models, columns = {}, {"K": [], "joint": [], "mano": [], "obj": []}
    for name in names:
        K, joints, mano, p2d = frame_targets(root, name, models)
        for key, value in zip(columns, (K, joints, mano, p2d)):
            columns[key].append(value.tolist())
        seq, fid = name.split("/")
        image = Image.open(os.path.join(root, "train", seq, "rgb", fid + ".png"))
        _, obj = decode_segmentation(os.path.join(root, "train", seq, "seg", fid + ".png"), "ho3d")
        mask = Image.fromarray(np.asarray(obj, dtype=np.uint8) * 255)
        if mask.size != image.size:
            mask = mask.resize(image.size, Image.NEAREST)
        os.makedirs(os.path.join(out, "train_segLabel", seq), exist_ok=True)
        mask.save(os.path.join(out, "train_segLabel", seq, fid + ".png"))
    with open(os.path.join(out, "train.txt"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    for key, rows in columns.items():
        with open(os.path.join(out, f"train_{key}.json"), "w") as f:
            json.dump(rows, f)
    return names
