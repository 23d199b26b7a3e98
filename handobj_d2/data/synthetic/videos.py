"""Unlabeled synthetic videos: one grasp moving smoothly in front of the camera.

The grasped object moves rigidly with the hand; the hand's global rotation, position and
finger curl vary slowly (sums of sinusoids whose periods are counted in frames, so a longer clip
is not a faster one). Each video is written as

    <root>/videos/<name>.mp4                     (mp4v codec, VIDEO_FPS)
    <root>/video_frames/<name>/<frame:04d>.png   (lossless, the same frames)
    <root>/video_ground_truth/<name>.pkl         ground truth, apart from the training data

The ground truth pickle is ``{"name", "fps", "frames": [meta, ...]}`` with one HO3D train-style
meta dict per frame (writer.ho3d_meta). Nothing in the training pipeline reads it: it is there
to measure the quality of pseudo-labels (``read_video_ground_truth``,
``video_ground_truth_boxes``). It is written last: a video is complete when it
exists (the mp4 is encoded under a temporary name and renamed, the frames written atomically).
"""

import glob
import os
import pickle
from dataclasses import dataclass

import cv2
import numpy as np

from ...geometry import HO3D_TO_MANOPTH, opengl_to_opencv, points_to_box, project_points
from ...utils.io import atomic_path
from .writer import ho3d_meta, write_image, write_pickle

VIDEO_FPS = 30.0
ROTATION_AMPLITUDE = (0.15, 0.45)  # rad, per axis
TRANSLATION_AMPLITUDE = (0.01, 0.04)  # m, per axis
PERIOD_FRAMES = (40, 90)  # frames per cycle of every sinusoid
MAX_OPENING = 0.12  # largest relative relaxation of the finger pose


def _rotation_matrix(axis_angle):
    return cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))[0]


@dataclass
class Trajectory:
    """Per-frame motion of a grasp: rotations (T, 3, 3) applied in the camera frame about the
    wrist, wrist offsets (T, 3) m, and finger openings (T,) in [0, MAX_OPENING] (the finger pose
    is scaled by 1 - opening, which lifts the fingers off the object)."""

    rotations: np.ndarray
    offsets: np.ndarray
    openings: np.ndarray


def _sinusoid(rng, frames, amplitude, count):
    """``count`` smooth signals (T, count) starting at 0, amplitude drawn in ``amplitude``."""
    t = np.arange(frames)[:, None]
    amp = rng.uniform(*amplitude, size=count)
    period = rng.uniform(*PERIOD_FRAMES, size=count)
    phase = rng.uniform(0, 2 * np.pi, size=count)
    return amp * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase))


def sample_trajectory(rng, frames):
    """A smooth Trajectory of ``frames`` frames; the first frame is the identity motion."""
    axis_angles = _sinusoid(rng, frames, ROTATION_AMPLITUDE, 3)
    offsets = _sinusoid(rng, frames, TRANSLATION_AMPLITUDE, 3)
    period = rng.uniform(*PERIOD_FRAMES)
    openings = rng.uniform(0, MAX_OPENING) * (1 - np.cos(2 * np.pi * np.arange(frames) / period))
    return Trajectory(
        rotations=np.stack([_rotation_matrix(a) for a in axis_angles]),
        offsets=offsets,
        openings=openings / 2,
    )


def ground_truth_path(root, name):
    return os.path.join(root, "video_ground_truth", f"{name}.pkl")


def write_video(root, name, frames):
    """Write a list of HandObjectFrame as mp4, frame folder and ground-truth pickle."""
    height, width = frames[0].image.shape[:2]
    path = os.path.join(root, "videos", f"{name}.mp4")
    with atomic_path(path) as partial:
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        video = cv2.VideoWriter(partial, fourcc, VIDEO_FPS, (width, height))
        if not video.isOpened():
            raise OSError(f"{path}: OpenCV cannot open an mp4v video writer")
        for index, frame in enumerate(frames):
            video.write(np.ascontiguousarray(frame.image[..., ::-1]))
            write_image(os.path.join(root, "video_frames", name, f"{index:04d}.png"), frame.image)
        video.release()
    truth = {
        "name": name,
        "fps": VIDEO_FPS,
        "frames": [ho3d_meta(frame, "train") for frame in frames],
    }
    write_pickle(ground_truth_path(root, name), truth)


def read_video_ground_truth(root, name):
    """The per-frame HO3D meta dicts of the video ``name`` under ``root`` (``write_video``)."""
    with open(ground_truth_path(root, name), "rb") as f:
        return pickle.load(f)["frames"]


def ground_truth_joints(meta):
    """The hand joints (21, 3) of a ground-truth meta dict: metres, OpenCV camera frame,
    manopth order (HO3D's handJoints3D are OpenGL, MANO order)."""
    return opengl_to_opencv(np.asarray(meta["handJoints3D"]))[HO3D_TO_MANOPTH]


def video_ground_truth_boxes(root):
    """A boxes file (handobj_d2/semi/teacher.py) of every video under ``root`` from its ground
    truth: the hand box bounds the projected joints, the object box the projected 3D box
    corners; scores 1. The stand-in for an external hand-object detector (the paper used
    100DOH's)."""
    boxes = {}
    for path in sorted(glob.glob(os.path.join(root, "video_ground_truth", "*.pkl"))):
        with open(path, "rb") as f:
            truth = pickle.load(f)
        boxes[truth["name"]] = {
            str(index): {
                part: points_to_box(
                    project_points(
                        opengl_to_opencv(np.asarray(meta[key])), np.asarray(meta["camMat"])
                    )
                ).tolist()
                + [1.0]
                for part, key in (("hand", "handJoints3D"), ("object", "objCorners3D"))
            }
            for index, meta in enumerate(truth["frames"])
        }
    return boxes
