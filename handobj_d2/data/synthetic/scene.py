"""Cameras, lights, skin and hand placement of synthetic scenes (OpenCV camera frame, metres).

The camera looks along +z. The hand is seen as a third-person camera sees a hand holding an
object (HO3D's viewpoints): any in-plane rotation, mostly the back or the side of the hand
(turned at most MAX_TURN about the forearm from the back; beyond a quarter turn the palm and the
object in it start to face the camera and hide the fingers), the fingers tilted at most MAX_TILT
towards or away from the camera, never the fully foreshortened views along the forearm. It is
placed so that the hand-object pair is in view with its centre ``HAND_DISTANCE`` from the
camera (HO3D's hands are about 0.4-0.8 m away).
"""

import numpy as np

from ...rendering import Lighting

HAND_DISTANCE = (0.4, 0.8)  # m, depth of the hand-object centre
HORIZONTAL_FOV = (0.85, 1.05)  # rad; HO3D's 640 px wide camera with fx ~ 614 px sees 0.96 rad
PRINCIPAL_POINT_JITTER = 0.02  # fraction of the image size
CENTRE_REGION = 0.25  # the hand-object centre lands within this fraction of the image centre
MAX_TILT = np.pi / 3  # rad, the wrist-to-fingers direction out of the image plane
MAX_TURN = 2 * np.pi / 3  # rad, about the forearm, from the back of the hand facing the camera


def sample_camera(rng, width, height):
    """Pinhole intrinsics K (3, 3) px for a width x height image (square pixels)."""
    focal = width / 2 / np.tan(rng.uniform(*HORIZONTAL_FOV) / 2)
    cx = width / 2 + rng.uniform(-1, 1) * PRINCIPAL_POINT_JITTER * width
    cy = height / 2 + rng.uniform(-1, 1) * PRINCIPAL_POINT_JITTER * height
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def sample_lighting(rng, domain):
    """A ``rendering.Lighting``: a light from the camera's side of the scene (so the visible surfaces are lit)."""
    direction = rng.normal(size=3)
    direction[2] = -abs(direction[2]) - 0.5  # towards the camera (negative z)
    colour = 1.0 + rng.uniform(-domain.light_tint, domain.light_tint, 3)
    return Lighting(
        ambient=rng.uniform(*domain.ambient),
        diffuse=rng.uniform(*domain.diffuse),
        direction=direction / np.linalg.norm(direction),
        colour=colour / colour.max(),
    )


def sample_skin(rng, domain):
    """Skin colour (3,) RGB in [0, 1]: one of the domain's tones, slightly jittered."""
    tone = np.asarray(domain.skin_tones[rng.integers(len(domain.skin_tones))])
    return np.clip(tone * rng.uniform(0.92, 1.08) + rng.uniform(-0.03, 0.03, 3), 0, 1)


def sample_betas(rng, domain):
    """MANO shape coefficients (10,), each uniform in the domain's range."""
    return rng.uniform(*domain.betas, size=10)


def _axis_rotation(axis, angle):
    """Rotation matrix (3, 3) by ``angle`` rad about the camera axis 0 (x), 1 (y) or 2 (z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    rotation = np.eye(3)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


def sample_hand_rotation(rng, palm_axes):
    """Global hand rotation (3, 3), hand frame -> OpenCV camera frame. ``palm_axes`` (3, 3):
    the palm's across, forward and normal axes as columns, in the hand frame
    (``grasp.PalmFrame.matrix``).

    Canonical view: fingers up in the image (forward along -y), the back of the hand towards the
    camera (the palm normal along +z), so the index knuckle is left of the little finger's
    (across along -x). Then a rotation about the forearm (uniform in +-MAX_TURN), a tilt out of
    the image plane (uniform in +-MAX_TILT) and an in-plane rotation (uniform)."""
    canonical = np.diag([-1.0, -1.0, 1.0]) @ palm_axes.T
    about_forearm = _axis_rotation(1, rng.uniform(-MAX_TURN, MAX_TURN))
    tilt = _axis_rotation(0, rng.uniform(-MAX_TILT, MAX_TILT))
    in_plane = _axis_rotation(2, rng.uniform(-np.pi, np.pi))
    return in_plane @ tilt @ about_forearm @ canonical


def place_in_view(rng, K, width, height, centre):
    """Wrist position (3,) m in the camera frame such that the point ``centre`` (3,), given
    relative to the wrist in the camera's axes, is HAND_DISTANCE away and projects within
    CENTRE_REGION of the image centre."""
    depth = rng.uniform(*HAND_DISTANCE)
    pixel = np.array([width, height]) * (0.5 + rng.uniform(-1, 1, 2) * CENTRE_REGION / 2)
    ray = np.linalg.solve(K, np.array([pixel[0], pixel[1], 1.0]))
    return ray * depth - centre
