#!/usr/bin/env python
"""Render the MANO hand (by default the project's synthetic one) in a few poses.

    python tools/render_synthetic_hand.py --output docs/images/synthetic_hand.png
    python tools/render_synthetic_hand.py --mano-path mano_v1_2/models/MANO_RIGHT.pkl --output x.png

Poses (right hand): flat, fist, pinch (thumb and index tips meet) and pointing. They are built
from the rest joints alone (any MANO-format right hand works), with the synthetic hand's flexion
convention: a joint curls the bone after it towards its pad by a positive rotation about
``bone x pad``; the pad faces the palm normal (the thumb's: half-way between the palm normal and
the fingers); the thumb's first joint opposes it in front of the palm about
``across x palm_normal``. Top row from the palm side, bottom row from the back, drawn by
handobj_d2.rendering.
"""

import argparse
import os
import sys

import cv2
import numpy as np
import torch

from handobj_d2.geometry import MANOPTH_TO_HO3D
from handobj_d2.mano import HandLayer
from handobj_d2.rendering import Lighting, Mesh, render_meshes

# MANO joint ids (1-15) of each chain, knuckle to distal joint.
CHAINS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12),
          "thumb": (13, 14, 15)}  # fmt: skip
# Flexion (radians) of (knuckle, middle, distal) per finger; thumb: (opposition, curl, curl).
POSES = {
    "flat": {},
    "fist": {"index": (1.45, 1.6, 1.0), "middle": (1.45, 1.6, 1.0), "ring": (1.45, 1.6, 1.0),
             "pinky": (1.45, 1.6, 1.0), "thumb": (1.0, 0.9, 1.2)},
    "pinch": {"index": (0.9, 0.9, 0.55), "middle": (0.35, 0.5, 0.3), "ring": (0.4, 0.55, 0.3),
              "pinky": (0.45, 0.6, 0.35), "thumb": (1.0, 0.3, 0.45)},
    "pointing": {"index": (0.0, 0.05, 0.0), "middle": (1.45, 1.6, 1.0), "ring": (1.45, 1.6, 1.0),
                 "pinky": (1.45, 1.6, 1.0), "thumb": (0.9, 0.45, 0.6)},
}  # fmt: skip
SKIN = np.array([0.87, 0.68, 0.58])


def _unit(v):
    return v / np.linalg.norm(v)


def palm_frame(joints):
    """Unit forward (wrist -> middle knuckle), across (pinky -> index knuckle, made orthogonal)
    and palm normal (across x forward: out of a right hand's palm) from joints (21, 3)."""
    forward = _unit(joints[9] - joints[0])
    across = joints[5] - joints[17]
    across = _unit(across - (across @ forward) * forward)
    return forward, across, np.cross(across, forward)


def finger_pose(rest_joints, flexion):
    """(45,) axis-angle of MANO joints 1-15 for {finger: three angles} (see POSES)."""
    _, across, normal = palm_frame(rest_joints)
    mano = rest_joints[MANOPTH_TO_HO3D]  # 16 MANO joints, then the tips (thumb .. pinky)
    tips = {"thumb": 16, "index": 17, "middle": 18, "ring": 19, "pinky": 20}
    pose = np.zeros((15, 3))
    for finger, angles in flexion.items():
        chain = CHAINS[finger]
        points = [mano[j] for j in chain] + [mano[tips[finger]]]
        for level, (joint, angle) in enumerate(zip(chain, angles)):
            bone = _unit(points[level + 1] - points[level])
            towards = normal
            if finger == "thumb":  # its pad faces the palm and the fingers
                towards = _unit(normal + np.cross(normal, bone))
            axis = _unit(np.cross(bone, towards))
            if finger == "thumb" and level == 0:
                axis = _unit(np.cross(across, normal))
            pose[joint - 1] = angle * axis
    return pose.ravel()


def view_rotation(rest_joints, yaw, pitch):
    """Rotation (3, 3) from the hand's frame to the OpenCV camera: palm towards the camera,
    fingers up, thumb to the right (a right hand), then turned by yaw about the image's vertical
    axis and pitch about its horizontal axis (degrees)."""
    forward, across, normal = palm_frame(rest_joints)
    yaw, pitch = np.radians(yaw), np.radians(pitch)
    turn_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    turn_x = np.array(
        [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
    )
    return turn_x @ turn_y @ np.stack([across, -forward, -normal])


def render_panel(vertices, faces, rotation, size, title):
    """One image (size, size, 3) uint8 RGB of the hand, vertices (778, 3) seen through
    ``rotation`` (hand frame -> camera)."""
    points = vertices @ rotation.T
    points -= (points.max(0) + points.min(0)) / 2
    extent = np.abs(points[:, :2]).max()
    distance = 0.5
    focal = 0.42 * size * distance / extent
    points[:, 2] += distance
    K = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
    lighting = Lighting(ambient=0.35, diffuse=0.65, direction=_unit(np.array([-0.4, -0.5, -1.0])))
    image = render_meshes(
        K, (size, size), [Mesh(points, faces, colors=SKIN)], lighting, background=(1.0, 1.0, 1.0)
    ).image.copy()
    cv2.putText(image, title, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (40, 40, 40), 2)
    return image


def render_poses(mano_path="", size=360):
    """Picture (2 * size, len(POSES) * size, 3) uint8 RGB: every pose from the palm side (top
    row) and in a three-quarter view from the back (bottom row)."""
    layer = HandLayer(mano_path)
    faces = layer.faces.numpy()
    with torch.no_grad():
        _, rest = layer(torch.zeros(1, 48), torch.zeros(1, 10))
    rest = rest[0].numpy().astype(np.float64)
    rows = [[], []]
    for name, flexion in POSES.items():
        pose = np.concatenate([np.zeros(3), finger_pose(rest, flexion)])
        with torch.no_grad():
            vertices, _ = layer(
                torch.as_tensor(pose, dtype=torch.float32)[None], torch.zeros(1, 10)
            )
        hand = vertices[0].numpy().astype(np.float64)
        rows[0].append(render_panel(hand, faces, view_rotation(rest, 0, 0), size, name))
        rows[1].append(render_panel(hand, faces, view_rotation(rest, 145, -25), size, ""))
    return np.concatenate([np.concatenate(r, 1) for r in rows], 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--mano-path", default="", help="MANO_RIGHT.pkl (empty: synthetic hand)")
    parser.add_argument("--size", type=int, default=360, help="panel size, pixels")
    args = parser.parse_args(argv)
    picture = render_poses(args.mano_path, args.size)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if not cv2.imwrite(args.output, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        sys.exit(f"could not write {args.output}")
    print(f"wrote {args.output} ({picture.shape[1]}x{picture.shape[0]})")


if __name__ == "__main__":
    main()
