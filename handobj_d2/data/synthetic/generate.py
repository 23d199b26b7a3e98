"""Generating the synthetic HO3D-format set: labeled splits, object models and videos.

Reproducible: every sequence, frame and video draws from its own random stream seeded by
(seed, domain, split, index), so the same arguments give byte-identical annotations, and a
smaller set with the same seed is a prefix of a larger one.

Labeled frames are grouped in sequences of ``frames_per_sequence`` frames sharing the object, the
hand shape, the skin tone and the camera (like an HO3D sequence: one subject, one object, one
camera); grasp, global pose, lighting and background change from frame to frame. A video keeps
one grasp, lighting and background and moves smoothly (videos.py).
"""

import contextlib
import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ...geometry import matrix_to_axis_angle
from ...mano import HandLayer
from ...mano.layer import MANOPTH_FINGERTIPS
from ...utils.io import TEMPORARY_PREFIX, remove_temporary_files, write_atomically
from .backgrounds import render_background
from .domains import get_domain
from .grasp import GraspSynthesizer, PalmFrame
from .objects import EVALUATION_OBJECTS, TRAIN_OBJECTS, build_objects
from .render import render_frame
from .scene import (
    place_in_view,
    sample_betas,
    sample_camera,
    sample_hand_rotation,
    sample_lighting,
    sample_skin,
)
from .videos import ground_truth_path, sample_trajectory, write_video
from .writer import HandObjectFrame, HO3DWriter, write_object_models

logger = logging.getLogger(__name__)

SEQUENCE_LENGTH = 8  # labeled frames per sequence by default
SUMMARY_FILE = "synthetic.json"  # the arguments of a generated set, in its root
GRASP_ATTEMPTS = 30  # grasps tried per frame before giving up
VIEW_ATTEMPTS = 10  # global poses tried per grasp
MIN_VISIBLE_FRACTION = 0.002  # of the image area, for the hand and for the object
EDGE_MARGIN = 2  # px, every hand joint projects at least this far inside the image
_SPLIT_CODES = {"train": 0, "evaluation": 1, "video": 2}


def _rng(seed, domain, split, *indices):
    """An independent random stream for one item (stable across runs and Python versions)."""
    entropy = [seed, zlib.crc32(domain.encode()), _SPLIT_CODES[split], *indices]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _axis_angle(matrix):
    """Rotation matrix (3, 3) -> axis-angle (3,) (numpy)."""
    return matrix_to_axis_angle(torch.as_tensor(matrix, dtype=torch.float64)).numpy()


@dataclass
class SequenceSetup:
    """What the frames of one sequence (or video) share: object, hand shape (10,), skin colour
    (3,) RGB in [0, 1] and intrinsics K (3, 3) px."""

    object_name: str
    mano_shape: np.ndarray
    skin: np.ndarray
    camera_K: np.ndarray


class SyntheticSceneGenerator:
    """Samples and renders hand-object frames of one domain at one image size.

    Args:
        domain: name of a registered SyntheticDomain.
        image_size: (width, height) pixels.
        mano_path: MANO model file; "" for the project's synthetic MANO-format hand.
        fingertip_vertices: the 5 fingertip vertex ids of the 21 joints (manopth's by
            default, the default of MODEL.MANO.FINGERTIP_VERTICES).
    """

    def __init__(self, domain="default", image_size=(320, 240), mano_path="",
                 fingertip_vertices=MANOPTH_FINGERTIPS["right"]):  # fmt: skip
        self.domain = get_domain(domain)
        self.width, self.height = image_size
        self.grasps = GraspSynthesizer(HandLayer(mano_path, tuple(fingertip_vertices)))
        self.hand_faces = self.grasps.layer.faces.numpy()
        self.objects = build_objects()

    def sample_setup(self, rng, object_names):
        """A SequenceSetup with an object drawn from ``object_names``."""
        return SequenceSetup(
            object_name=object_names[rng.integers(len(object_names))],
            mano_shape=sample_betas(rng, self.domain),
            skin=sample_skin(rng, self.domain),
            camera_K=sample_camera(rng, self.width, self.height),
        )

    def sample_grasp(self, rng, setup):
        """A Grasp of the setup's object, or a RuntimeError after GRASP_ATTEMPTS failures."""
        obj = self.objects[setup.object_name]
        for _ in range(GRASP_ATTEMPTS):
            grasp = self.grasps.fit(rng, obj, setup.mano_shape)
            if grasp is not None:
                return grasp
        raise RuntimeError(
            f"no grasp of {setup.object_name} without interpenetration in {GRASP_ATTEMPTS} tries"
        )

    def sample_view(self, rng, setup, grasp):
        """Global rotation (3, 3) and wrist position (3,) m that put the grasp in view."""
        rotation = sample_hand_rotation(rng, PalmFrame.from_joints(grasp.joints).matrix())
        centre = (grasp.joints.mean(0) + grasp.object_t) / 2
        wrist = place_in_view(rng, setup.camera_K, self.width, self.height, rotation @ centre)
        return rotation, wrist

    def frame(self, setup, grasp, rotation, wrist, lighting, background, opening=0.0):
        """Render a grasp under a global rotation (3, 3) about the wrist and a wrist position
        (3,) m (OpenCV camera frame) to a HandObjectFrame. ``opening`` relaxes the fingers:
        the finger pose is scaled by 1 - opening."""
        finger_pose = grasp.finger_pose * (1 - opening)
        if opening:
            vertices, joints = self.grasps.forward(finger_pose[None], setup.mano_shape)
        else:
            vertices, joints = grasp.vertices, grasp.joints
        vertices = vertices @ rotation.T + wrist
        joints = joints @ rotation.T + wrist
        object_R = rotation @ grasp.object_R
        object_t = rotation @ grasp.object_t + wrist
        obj = self.objects[setup.object_name]
        image, hand_mask, object_mask = render_frame(
            setup.camera_K,
            background,
            hand=(vertices, self.hand_faces, setup.skin),
            obj=(obj.vertices @ object_R.T + object_t, obj.faces, obj.uvs, obj.texture),
            lighting=lighting,
        )
        return HandObjectFrame(
            camera_K=setup.camera_K,
            mano_pose=np.concatenate([_axis_angle(rotation), finger_pose]),
            mano_shape=setup.mano_shape,
            hand_joints=joints,
            hand_vertices=vertices,
            hand_rest_root=self.grasps.rest_root(setup.mano_shape),
            object_name=setup.object_name,
            object_R=object_R,
            object_t=object_t,
            object_corners=obj.corners(),
            image=image,
            hand_mask=hand_mask,
            object_mask=object_mask,
        )

    def is_usable(self, frame):
        """Every joint inside the image and both hand and object visible enough."""
        pixels = frame.hand_joints @ frame.camera_K.T
        pixels = pixels[:, :2] / pixels[:, 2:]
        limit = np.array([self.width, self.height]) - EDGE_MARGIN
        inside = (pixels >= EDGE_MARGIN).all() and (pixels <= limit).all()
        least = MIN_VISIBLE_FRACTION * self.width * self.height
        return inside and frame.hand_mask.sum() >= least and frame.object_mask.sum() >= least

    def _background(self, rng):
        names = self.domain.backgrounds
        return render_background(names[rng.integers(len(names))], rng, self.width, self.height)

    def sample_frame(self, rng, setup):
        """A usable labeled frame of the setup (a new grasp and view until one is usable)."""
        for _ in range(GRASP_ATTEMPTS):
            grasp = self.sample_grasp(rng, setup)
            lighting, background = sample_lighting(rng, self.domain), self._background(rng)
            for _ in range(VIEW_ATTEMPTS):
                rotation, wrist = self.sample_view(rng, setup, grasp)
                frame = self.frame(setup, grasp, rotation, wrist, lighting, background)
                if self.is_usable(frame):
                    return frame
        raise RuntimeError(f"no usable view of {setup.object_name} found")

    def sample_video(self, rng, setup, num_frames):
        """Frames (list of HandObjectFrame) of one grasp moving smoothly; the first frame is a
        usable view and the trajectory is redrawn until every frame is."""
        for _ in range(GRASP_ATTEMPTS):
            grasp = self.sample_grasp(rng, setup)
            lighting, background = sample_lighting(rng, self.domain), self._background(rng)
            for _ in range(VIEW_ATTEMPTS):
                rotation, wrist = self.sample_view(rng, setup, grasp)
                trajectory = sample_trajectory(rng, num_frames)
                frames = []
                for motion, offset, opening in zip(
                    trajectory.rotations, trajectory.offsets, trajectory.openings
                ):
                    frame = self.frame(
                        setup,
                        grasp,
                        motion @ rotation,
                        wrist + offset,
                        lighting,
                        background,
                        opening,
                    )
                    if not self.is_usable(frame):
                        break
                    frames.append(frame)
                if len(frames) == num_frames:
                    return frames
        raise RuntimeError(f"no video of {setup.object_name} stays in view")


@contextlib.contextmanager
def _single_thread_torch():
    """One torch thread while generating: the MANO batches are tiny, and on a shared machine
    extra threads only wait for each other (a 10x slow-down on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _write_summary(output, summary):
    write_atomically(os.path.join(output, SUMMARY_FILE), json.dumps(summary, indent=2))


def prepare_output(output, overwrite=False, summary=None):
    """Make sure ``output`` is empty, or holds an interrupted generation of the same set
    (``summary``, from ``dataset_summary``), which ``generate_dataset`` then finishes: a
    leftover set would mix stale frames and videos into the new one. With ``overwrite``, an
    earlier synthetic set (it has SUMMARY_FILE) is removed; anything else is never deleted
    (ValueError)."""
    if not os.path.exists(output) or (
        os.path.isdir(output)
        and all(name.startswith(TEMPORARY_PREFIX) for name in os.listdir(output))
    ):
        return  # empty, or holding only what a run killed at its start left
    if not os.path.isdir(output):
        raise ValueError(f"--output {output} is a file, not a folder")
    if not overwrite and summary is not None and unfinished_same_set(output, summary):
        return
    if not overwrite:
        raise ValueError(f"--output {output} is not empty; pass --overwrite to replace it")
    if not os.path.isfile(os.path.join(output, SUMMARY_FILE)):
        raise ValueError(
            f"--output {output} is not empty and holds no {SUMMARY_FILE}: not a synthetic set, "
            "refusing to delete it"
        )
    shutil.rmtree(output)


def dataset_summary(train=64, evaluation=16, videos=2, frames_per_video=16, image_size=(320, 240),
                    seed=0, domain="default", mano_path="", frames_per_sequence=SEQUENCE_LENGTH):  # fmt: skip
    """The SUMMARY_FILE dict of a set being made with these ``generate_dataset`` arguments
    (``complete`` False)."""
    return {
        "domain": domain,
        "seed": seed,
        "image_size": list(image_size),
        "train": train,
        "evaluation": evaluation,
        "frames_per_sequence": frames_per_sequence,
        "videos": [f"{domain}_video_{index:03d}" for index in range(videos)],
        "frames_per_video": frames_per_video,
        "mano_path": mano_path,
        "complete": False,
    }


def unfinished_same_set(output, summary):
    """Whether ``output`` holds an interrupted generation of the same set (its summary, written
    first, equals ``summary`` and says ``complete`` False): its finished frames are kept."""
    path = os.path.join(output, SUMMARY_FILE)
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        previous = json.load(f)
    return previous == summary


@_single_thread_torch()
def generate_dataset(output, train=64, evaluation=16, videos=2, frames_per_video=16,
                     image_size=(320, 240), seed=0, domain="default", mano_path="",
                     frames_per_sequence=SEQUENCE_LENGTH, progress=True):  # fmt: skip
    """Write the synthetic set under ``output`` (layout: writer.py and videos.py).

    Train frames use TRAIN_OBJECTS, evaluation frames HO3D's evaluation objects (one of them
    unseen in training), videos any object. Returns the summary dict of the arguments, also
    written to ``<output>/SUMMARY_FILE`` first with ``complete`` False, then True at the end.

    Resumable: when ``output`` holds an interrupted generation with the same arguments, the
    frames and videos it finished are kept (every item has its own random stream, so the
    result is byte-identical to an uninterrupted run); evaluation frames are sampled again for
    the ground-truth files, not rewritten."""
    generator = SyntheticSceneGenerator(domain, image_size, mano_path)
    summary = dataset_summary(train, evaluation, videos, frames_per_video, image_size, seed,
                              domain, mano_path, frames_per_sequence)  # fmt: skip
    resume = unfinished_same_set(output, summary)
    if resume:
        logger.info(f"{output}: resuming an interrupted generation of the same set")
        remove_temporary_files(output)
    _write_summary(output, summary)
    write_object_models(output, generator.objects)
    writer = HO3DWriter(output)
    bar = tqdm(total=train + evaluation + videos * frames_per_video, disable=not progress,
               desc=f"synthetic {domain}", unit="frame")  # fmt: skip
    for split, count, objects in (
        ("train", train, TRAIN_OBJECTS),
        ("evaluation", evaluation, EVALUATION_OBJECTS),
    ):
        for index in range(count):
            sequence, frame_index = divmod(index, frames_per_sequence)
            names = (split, f"{domain}_{split}_{sequence:03d}", f"{frame_index:04d}")
            done = resume and os.path.isfile(writer.meta_path(*names))
            bar.update()
            if done and split == "train":
                writer.list_frame(*names)
                continue
            setup = generator.sample_setup(_rng(seed, domain, split, sequence), objects)
            frame = generator.sample_frame(_rng(seed, domain, split, sequence, frame_index), setup)
            writer.write(*names, frame, files=not done)
    writer.close()
    for index, name in enumerate(summary["videos"]):
        if resume and os.path.isfile(ground_truth_path(output, name)):
            bar.update(frames_per_video)
            continue
        rng = _rng(seed, domain, "video", index)
        setup = generator.sample_setup(rng, tuple(generator.objects))
        write_video(output, name, generator.sample_video(rng, setup, frames_per_video))
        bar.update(frames_per_video)
    bar.close()
    summary["complete"] = True
    _write_summary(output, summary)
    return summary
