"""Hand-made 3D hand skeletons for tests (no MANO involved)."""

import numpy as np
from scipy.spatial.transform import Rotation


def flat_skeleton():
    """A flat 21-joint hand (manopth order) in metres: wrist at 0, five fingers fanned 0.3 rad
    apart in the image plane (z = 0), knuckles 8 cm from the wrist, 2.5 cm bones."""
    joints = [np.zeros(3)]
    for finger in range(5):
        direction = np.array([np.sin(0.3 * (finger - 2)), -np.cos(0.3 * (finger - 2)), 0.0])
        joints += [0.08 * direction + 0.025 * k * direction for k in range(4)]
    return np.array(joints)


def rotating_hand(frame, degrees_per_frame=2.0):
    """The flat skeleton turned about the camera's z axis by ``frame * degrees_per_frame``."""
    rotation = Rotation.from_euler("z", degrees_per_frame * frame, degrees=True).as_matrix()
    return flat_skeleton() @ rotation.T
