"""A tiny HO3D tree in the dataset's exact on-disk format (Python 2 era pickles of numpy arrays,
OpenGL camera frame, MANO joint order), with values chosen so that the loaded records can be
checked by hand."""

import os
import pickle

import cv2
import numpy as np

from handobj_d2.data.segmentation import encode_ho3d

HEIGHT, WIDTH = 48, 64
CAM = np.array([[100.0, 0.0, 32.0], [0.0, 100.0, 24.0], [0.0, 0.0, 1.0]], np.float32)
OBJECT = "021_bleach_cleanser"
# Model points: the corners of a 2 cm cube centred on the object origin.
MODEL_POINTS = 0.01 * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
CORNERS_REST = np.array(np.meshgrid([-0.02, 0.02], [-0.03, 0.03], [-0.01, 0.01])).reshape(3, -1).T
OBJ_TRANS_GL = np.array([0.05, 0.02, -0.4], np.float32)  # OpenCV: (0.05, -0.02, 0.4)
HAND_POSE = np.concatenate([[0.0, 0.0, np.pi / 2], np.linspace(-0.2, 0.2, 45)]).astype(np.float32)
HAND_BETA = np.linspace(-1, 1, 10).astype(np.float32)


def joints_gl():
    """HO3D-order joint j at (0.01 j, 0.005 j, -0.5) m in the OpenGL frame (y up, z back)."""
    j = np.arange(21, dtype=np.float32)
    return np.stack([0.01 * j, 0.005 * j, np.full(21, -0.5, np.float32)], 1)


def _dump(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)


def _image(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((HEIGHT, WIDTH, 3), value, np.uint8)
    image[10:30, 20:40] = (30, 160, 220)
    assert cv2.imwrite(path, image)


def train_meta():
    return {
        "camMat": CAM,
        "handPose": HAND_POSE,
        "handBeta": HAND_BETA,
        "handTrans": np.array([0.0, 0.0, -0.5], np.float32),
        "handJoints3D": joints_gl(),
        "objName": OBJECT,
        "objLabel": 21,
        "objRot": np.zeros((3, 1), np.float32),
        "objTrans": OBJ_TRANS_GL,
        "objCorners3DRest": CORNERS_REST.astype(np.float32),
        "objCorners3D": (CORNERS_REST * [1, -1, -1] + OBJ_TRANS_GL).astype(np.float32),
    }


def write_ho3d_tree(root, version="v2", train_frames=2, evaluation_frames=1):
    """Write the tree; returns its root. Train frame 0000 has a segmentation file, the others
    not. Evaluation frames carry the wrist only and handBoundingBox [20, 5, 50, 30]."""
    extension = {"v2": ".png", "v3": ".jpg"}[version]
    points_dir = os.path.join(root, "models", OBJECT)
    os.makedirs(points_dir, exist_ok=True)
    np.savetxt(os.path.join(points_dir, "points.xyz"), MODEL_POINTS, fmt="%.6f")
    names = {"train": [], "evaluation": []}
    for index in range(train_frames):
        frame = f"{index:04d}"
        folder = os.path.join(root, "train", "SeqA1")
        _image(os.path.join(folder, "rgb", frame + extension), 40 + index)
        _dump(os.path.join(folder, "meta", frame + ".pkl"), train_meta())
        if index == 0:
            hand = np.zeros((HEIGHT, WIDTH), bool)
            hand[5:20, 30:50] = True
            obj = np.zeros((HEIGHT, WIDTH), bool)
            obj[10:40, 5:30] = True
            os.makedirs(os.path.join(folder, "seg"), exist_ok=True)
            cv2.imwrite(
                os.path.join(folder, "seg", frame + ".png"),
                np.ascontiguousarray(encode_ho3d(hand, obj)[..., ::-1]),
            )
        names["train"].append(f"SeqA1/{frame}")
    for index in range(evaluation_frames):
        frame = f"{index:04d}"
        folder = os.path.join(root, "evaluation", "SeqB1")
        _image(os.path.join(folder, "rgb", frame + extension), 90)
        meta = train_meta()
        for key in ("handPose", "handBeta", "handTrans"):
            meta[key] = None
        meta["handJoints3D"] = joints_gl()[0]
        meta["handBoundingBox"] = np.array([20, 5, 50, 30], np.float32)
        _dump(os.path.join(folder, "meta", frame + ".pkl"), meta)
        names["evaluation"].append(f"SeqB1/{frame}")
    for split, lines in names.items():
        with open(os.path.join(root, f"{split}.txt"), "w") as f:
            f.writelines(f"{line}\n" for line in lines)
    return root
