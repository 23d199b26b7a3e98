"""Synthetic hands alone (no object) written in FreiHAND v2's layout
(handobj_d2/data/datasets/freihand.py), so the FreiHAND loader, scorer and evaluator run on data
the project makes (``tools/make_synthetic_dataset.py --format freihand``):

    <root>/training/rgb/%08d.jpg        ``versions`` x ``train`` images: version 0 on a green
                                        screen (FreiHAND's "gs"), the others the same hand on
                                        the domain's backgrounds; image v * train + i
    <root>/training/mask/%08d.jpg       hand masks (0 / 255)
    <root>/training_{K,xyz,verts,mano,scale}.json
    <root>/evaluation/rgb/%08d.jpg      on the domain's backgrounds
    <root>/evaluation_{K,scale,xyz,verts,mano}.json     (the released ground truth included)
    <root>/mano/MANO_RIGHT.pkl          the hand the set was made with (the synthetic hand)
    <root>/synthetic.json               the arguments ("complete": true once finished)

FreiHAND's conventions: metres, OpenCV camera frame, manopth joint order; MANO values (1, 61):
pose relative to the hand mean (``flat_hand_mean=False``), shape, uv_root (the middle knuckle's
pixel with focal (fx + fy) / 2) and scale (focal / its depth); scale.json the middle finger's
proximal bone length |xyz[9] - xyz[10]|. The keypoints' tips are the hand layer's fingertip
vertices: the synthetic hand's tips sit at manopth's ids (FreiHAND's ids 744/320/443/555/672 are
real-MANO vertices, elsewhere on the synthetic mesh). Every file is written atomically and the
same arguments give the same files.
"""

import json
import os

import cv2
import numpy as np

from ...geometry import project_points
from ...mano import load_mano_model, write_synthetic_mano
from ...mano.layer import MANOPTH_FINGERTIPS
from ...utils.io import write_atomically
from ..datasets.freihand import SAMPLE_VERSIONS
from .generate import SUMMARY_FILE, SyntheticSceneGenerator, _axis_angle, _rng
from .grasp import PalmFrame
from .render import render_frame
from .scene import sample_betas, sample_camera, sample_hand_rotation, sample_lighting, sample_skin

GREEN_SCREEN = (0.05, 0.69, 0.25)  # RGB in [0, 1]
HAND_FILL = (0.45, 0.7)  # the hand's largest extent, as a fraction of the image width
CENTRE_JITTER = 0.08  # the hand's centre lands within this fraction of the image centre
EDGE_MARGIN = 2  # px, every joint projects at least this far inside the image
MIN_HAND_FRACTION = 0.03  # of the image area, visible hand pixels
ATTEMPTS = 50
JPEG_QUALITY = 95


def mano_values(mano_pose, mano_shape, joints, K, hands_mean):
    """FreiHAND's 61 MANO values (61,) of a hand: pose (48,) in the project's convention (flat
    hand mean) made relative to ``hands_mean`` (45,), shape (10,), then uv_root and scale that
    put the middle knuckle ``joints[9]`` (camera frame, m) back (``freihand.mano_root``)."""
    focal = 0.5 * (K[0, 0] + K[1, 1])
    knuckle = joints[9]
    scale = focal / knuckle[2]
    uv_root = knuckle[:2] * scale + K[:2, 2]
    pose = np.concatenate([mano_pose[:3], mano_pose[3:] - hands_mean])
    return np.concatenate([pose, mano_shape, uv_root, [scale]])


class FreiHANDSceneGenerator(SyntheticSceneGenerator):
    """Hands alone in view, FreiHAND style: a crop around one hand filling most of it."""

    def sample_hand(self, rng):
        """(K (3, 3), mano_pose (48,), mano_shape (10,), vertices (778, 3), joints (21, 3),
        skin (3,), lighting) of a hand in view, OpenCV camera frame, metres."""
        K = sample_camera(rng, self.width, self.height)
        shape = sample_betas(rng, self.domain)
        skin, lighting = sample_skin(rng, self.domain), sample_lighting(rng, self.domain)
        palm_axes = PalmFrame.from_joints(self.grasps.rest(shape)[1]).matrix()
        for _ in range(ATTEMPTS):
            finger_pose, vertices, joints = self.grasps.open_hand(rng, shape)
            rotation = sample_hand_rotation(rng, palm_axes)
            turned = vertices @ rotation.T
            centre = (turned.max(0) + turned.min(0)) / 2
            extent = (turned.max(0) - turned.min(0))[:2].max()
            depth = K[0, 0] * extent / (rng.uniform(*HAND_FILL) * self.width)
            pixel = np.array([self.width, self.height]) * (
                0.5 + rng.uniform(-1, 1, 2) * CENTRE_JITTER
            )
            ray = np.linalg.solve(K, np.array([pixel[0], pixel[1], 1.0]))
            wrist = ray * depth - centre
            vertices, joints = turned + wrist, joints @ rotation.T + wrist
            pixels = project_points(joints, K)
            limit = np.array([self.width, self.height]) - EDGE_MARGIN
            if (pixels >= EDGE_MARGIN).all() and (pixels <= limit).all():
                pose = np.concatenate([_axis_angle(rotation), finger_pose])
                return K, pose, shape, vertices, joints, skin, lighting
        raise RuntimeError("no hand pose in view found")

    def render(self, K, vertices, skin, lighting, background):
        """RGB image (H, W, 3) uint8 and hand mask (H, W) bool of the hand over ``background``."""
        image, hand_mask, _ = render_frame(
            K, background, (vertices, self.hand_faces, skin), None, lighting
        )
        return image, hand_mask

    def background(self, rng, green_screen=False):
        if green_screen:
            noise = rng.normal(0, 0.01, (self.height, self.width, 1))
            return np.clip(np.asarray(GREEN_SCREEN) + noise, 0, 1)
        return self._background(rng)


def _write_jpeg(path, image):
    """An RGB (H, W, 3) or grey (H, W) uint8 image as JPEG."""
    if image.ndim == 3:
        image = image[..., ::-1]
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])  # fmt: skip
    if not ok:
        raise OSError(f"cannot encode image {path} as JPEG")
    write_atomically(path, encoded.tobytes())


def _write_json(path, values):
    write_atomically(path, json.dumps(values))


def generate_freihand_dataset(output, train=8, evaluation=8, versions=len(SAMPLE_VERSIONS),
                              image_size=(224, 224), seed=0, domain="default",
                              mano_path=""):  # fmt: skip
    """Write a synthetic FreiHAND-format set under ``output`` (layout: module docstring):
    ``train`` training frames in ``versions`` (1-4) sample versions, ``evaluation`` evaluation
    frames with their ground truth. Returns the summary dict (also in SUMMARY_FILE)."""
    if not 1 <= versions <= len(SAMPLE_VERSIONS):
        raise ValueError(f"versions must be 1 to {len(SAMPLE_VERSIONS)}, got {versions}")
    summary = {
        "format": "freihand",
        "domain": domain,
        "seed": seed,
        "image_size": list(image_size),
        "train": train,
        "evaluation": evaluation,
        "versions": versions,
        "mano_path": mano_path,
        "complete": False,
    }
    summary_path = os.path.join(output, SUMMARY_FILE)
    write_atomically(summary_path, json.dumps(summary, indent=2))
    generator = FreiHANDSceneGenerator(
        domain, image_size, mano_path, fingertip_vertices=MANOPTH_FINGERTIPS["right"]
    )
    # The hand layer poses with a flat hand mean: FreiHAND's poses are relative to the model's.
    hands_mean = np.asarray(load_mano_model(mano_path)["hands_mean"], np.float64).reshape(45)
    if not mano_path:
        write_synthetic_mano(os.path.join(output, "mano", "MANO_RIGHT.pkl"))
    for split, count in (("training", train), ("evaluation", evaluation)):
        lists = {key: [] for key in ("K", "xyz", "verts", "mano", "scale")}
        split_versions = versions if split == "training" else 1
        for i in range(count):
            rng = _rng(seed, f"freihand_{domain}", "train" if split == "training" else split, i)
            K, pose, shape, vertices, joints, skin, lighting = generator.sample_hand(rng)
            for version in range(split_versions):
                green = split == "training" and version == 0
                image, mask = generator.render(
                    K, vertices, skin, lighting, generator.background(rng, green)
                )
                name = f"{version * count + i:08d}.jpg"
                _write_jpeg(os.path.join(output, split, "rgb", name), image)
                if split == "training" and version == 0:
                    _write_jpeg(os.path.join(output, split, "mask", name), mask * np.uint8(255))
            lists["K"].append(K.tolist())
            lists["xyz"].append(joints.tolist())
            lists["verts"].append(vertices.tolist())
            lists["mano"].append([mano_values(pose, shape, joints, K, hands_mean).tolist()])
            lists["scale"].append(float(np.linalg.norm(joints[9] - joints[10])))
        if count:
            for key, values in lists.items():
                _write_json(os.path.join(output, f"{split}_{key}.json"), values)
    summary["complete"] = True
    write_atomically(summary_path, json.dumps(summary, indent=2))
    return summary
