"""Grasps of a box or cylinder by the MANO hand, found by closing the fingers onto the object.

Everything here is in the hand's canonical frame: the MANO hand with a zero global rotation,
wrist at the origin (``HandLayer`` output), metres. The palm frame is read off the model's
rest joints (so any MANO-format hand works): ``forward`` from the wrist to the middle knuckle,
``across`` from the little-finger knuckle to the index knuckle, and the palm ``normal``
(right hand: across x forward) pointing out of the palm.

A grasp places the object in front of the palm (the flat hand ``PALM_GAP`` from its surface,
object orientation: ``_object_orientation``), then closes the hand in two phases: the knuckles
(the thumb swinging in front of the palm), then the two distal joints. Each finger turns its
joints together and stops when the vertices it moves come within ``CONTACT_GAP`` of the object
(``CLOSING_STEPS`` closures tried in one batch). The object's analytic signed distance makes
contact and interpenetration exact to test. On flat faces the thumb, which lies a little below
the palm's plane in MANO's rest pose, often touches at once and stays along the face.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ...geometry import axis_angle_to_matrix, matrix_to_axis_angle

# manopth joint ids of each finger's three joints (knuckle, middle, distal) and its tip.
FINGER_JOINTS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
# MANO joint ids (the rows of the 16 rotations) of the same three joints.
FINGER_MANO_JOINTS = {
    "thumb": (13, 14, 15),
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "ring": (10, 11, 12),
    "pinky": (7, 8, 9),
}
FINGERS = ("index", "middle", "ring", "pinky")

PALM_GAP = 0.0015  # m, between the flat hand and the object surface
CONTACT_GAP = 0.001  # m, a finger stops this close to the surface
PENETRATION_TOLERANCE = 0.003  # m, deepest allowed vertex inside the object
CLOSING_STEPS = 24  # levels tried per closing phase
KNUCKLE_RANGE = 1.5  # rad, largest knuckle flexion of phase 1
DISTAL_RANGE = 1.6  # rad, largest middle-joint flexion of phase 2
DISTAL_RATIO = 0.8  # distal joint flexion / middle joint flexion
THUMB_OPPOSITION = (0.7, 1.3)  # rad, largest swing of the thumb in front of the palm
THUMB_CMC_FLEXION = 0.6  # rad, largest flexion of the thumb's first joint while it swings
MAX_WRAP_WIDTH = 0.10  # m, widest box face the fingers wrap over lengthwise
LID_GRASP_HEIGHT = 0.12  # m, cylinders shorter than this are sometimes held by the lid
LID_GRASP_PROBABILITY = 0.3
TOUCH_SLACK = 0.004  # m, a finger within CONTACT_GAP + this of the object touches it


def _normalize(vector):
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


@dataclass
class PalmFrame:
    """Palm frame of a rest hand (metres, canonical frame): unit forward, across, normal (3,)
    and the palm centre (3,) (the mean of the wrist and the four knuckles)."""

    forward: np.ndarray
    across: np.ndarray
    normal: np.ndarray
    centre: np.ndarray

    @classmethod
    def from_joints(cls, joints):
        """Palm frame from rest joints (21, 3), manopth order."""
        forward = _normalize(joints[9] - joints[0])
        across = joints[5] - joints[17]
        across = _normalize(across - (across @ forward) * forward)
        normal = np.cross(across, forward)
        knuckles = joints[[5, 9, 13, 17]]
        centre = (joints[0] + knuckles.sum(0)) / 5
        return cls(forward, across, normal, centre)

    def matrix(self):
        """Rotation (3, 3) with columns across, forward, normal (right-handed, since normal =
        across x forward): palm coordinates -> canonical frame."""
        return np.stack([self.across, self.forward, self.normal], 1)


@dataclass
class Grasp:
    """A hand pose holding an object, canonical hand frame.

    finger_pose (45,) axis-angle of the 15 finger joints (flat hand mean); object_R (3, 3),
    object_t (3,) map object points into the canonical hand frame; curls: per finger the
    fitted closing scales in [0, 1] of the knuckle phase and of the distal phase;
    vertices (778, 3) and joints (21, 3) of the posed hand; min_distance: the smallest signed
    distance (m) of a hand vertex to the object (negative: the deepest penetration).
    """

    finger_pose: np.ndarray
    object_R: np.ndarray
    object_t: np.ndarray
    curls: dict
    vertices: np.ndarray
    joints: np.ndarray
    min_distance: float


class GraspSynthesizer:
    """Finds grasps for one hand layer (a ``handobj_d2.mano.HandLayer``)."""

    def __init__(self, hand_layer):
        self.layer = hand_layer.double()
        weights = self.layer.mano.th_weights.numpy()
        dominant = weights.argmax(1)
        # Vertices moved by each finger joint: dominated by that joint or one further out.
        self.vertex_sets = {}
        for finger, mano_joints in FINGER_MANO_JOINTS.items():
            for level, joint in enumerate(mano_joints):
                self.vertex_sets[finger, level] = np.flatnonzero(
                    np.isin(dominant, mano_joints[level:])
                )

    def rest(self, mano_shape):
        """Rest vertices (778, 3) and joints (21, 3) of the shaped hand, canonical frame."""
        return self.forward(np.zeros((1, 45)), mano_shape)

    def forward(self, finger_poses, mano_shape):
        """finger_poses (B, 45), mano_shape (10,) -> vertices (B, 778, 3), joints (B, 21, 3)
        (squeezed when B == 1), canonical frame, metres, numpy."""
        finger_poses = torch.as_tensor(np.asarray(finger_poses), dtype=torch.float64)
        pose = torch.cat([torch.zeros(len(finger_poses), 3, dtype=torch.float64), finger_poses], 1)
        shape = torch.as_tensor(np.asarray(mano_shape), dtype=torch.float64)[None]
        with torch.no_grad():
            vertices, joints = self.layer(pose, shape.expand(len(pose), -1))
        vertices, joints = vertices.numpy(), joints.numpy()
        if len(vertices) == 1:
            return vertices[0], joints[0]
        return vertices, joints

    def rest_root(self, mano_shape):
        """Wrist joint (3,) of the shaped, unposed hand in MANO's own (un-centred) frame:
        what HO3D's handTrans is measured from."""
        shape = torch.as_tensor(np.asarray(mano_shape), dtype=torch.float64)[None]
        with torch.no_grad():
            return self.layer.mano.shape(shape)[1][0, 0].numpy()

    # ------------------------------------------------------------------------------------------
    def _flexion_axes(self, joints, normal):
        """Per finger, per joint (3,) unit axes that curl the bone after it towards ``normal``
        (a rotation by a positive angle): axis = bone x normal."""
        axes = {}
        for finger, ids in FINGER_JOINTS.items():
            bones = joints[list(ids[1:])] - joints[list(ids[:3])]
            axes[finger] = _normalize(np.cross(bones, normal))
        return axes

    @staticmethod
    def _pose(rotations, count):
        """rotations: {(finger, level): (3, 3) or (count, 3, 3)} -> (count, 45) finger
        axis-angle (the other joints unrotated)."""
        matrices = np.tile(np.eye(3), (count, 15, 1, 1))
        for (finger, level), rotation in rotations.items():
            matrices[:, FINGER_MANO_JOINTS[finger][level] - 1] = rotation
        return matrix_to_axis_angle(torch.as_tensor(matrices)).numpy().reshape(count, 45)

    @staticmethod
    def _rotation(axis, angles):
        """Rotations (..., 3, 3) by ``angles`` (...,) rad about the unit ``axis`` (3,)."""
        axis_angle = np.asarray(angles, dtype=np.float64)[..., None] * axis
        return axis_angle_to_matrix(torch.as_tensor(axis_angle)).numpy()

    def _apply(self, rotations, moving, scales):
        """Rotations after turning every moving joint by a scale of its largest angle.
        rotations: {(finger, level): (3, 3) or (S, 3, 3)}; moving: {finger: {level: (axis (3,),
        angle)}}; scales: {finger: (S,)} -> {(finger, level): (S, 3, 3)} (others as given)."""
        rotations = dict(rotations)
        for finger, joints in moving.items():
            for level, (axis, angle) in joints.items():
                key = (finger, level)
                turn = self._rotation(axis, angle * np.atleast_1d(scales[finger]))
                rotations[key] = rotations[key] @ turn if key in rotations else turn
        return rotations

    def _close(self, base, moving, mano_shape, distance):
        """One closing phase: every moving finger turns its joints together (a scale in [0, 1]
        of their largest angles, CLOSING_STEPS levels tried at once) until the vertices it
        moves come within CONTACT_GAP of the object. Returns {finger: (scale, touched)}, the
        scale interpolated linearly between the tried levels."""
        levels = np.linspace(0, 1, CLOSING_STEPS)
        rotations = self._apply(base, moving, {finger: levels for finger in moving})
        vertices, _ = self.forward(self._pose(rotations, len(levels)), mano_shape)
        fitted = {}
        for finger, joints in moving.items():
            ids = self.vertex_sets[finger, min(joints)]
            gaps = distance(vertices[:, ids].reshape(-1, 3)).reshape(len(levels), -1).min(1)
            blocked = np.flatnonzero(gaps < CONTACT_GAP)
            if len(blocked) == 0:
                fitted[finger] = (1.0, False)
            elif blocked[0] == 0:
                fitted[finger] = (0.0, True)
            else:
                k = blocked[0]
                t = (gaps[k - 1] - CONTACT_GAP) / max(gaps[k - 1] - gaps[k], 1e-9)
                fitted[finger] = (levels[k - 1] + t * (levels[k] - levels[k - 1]), True)
        return fitted

    def fit(self, rng, obj, mano_shape):
        """Sample a grasp of SyntheticObject ``obj`` by the hand of shape ``mano_shape``.

        Returns a Grasp, or None when the closed hand penetrates the object deeper than
        PENETRATION_TOLERANCE or fewer than two fingers plus the thumb touch it (resample)."""
        rest_vertices, joints = self.rest(mano_shape)
        palm = PalmFrame.from_joints(joints)
        object_R = palm.matrix() @ _object_orientation(rng, obj)
        object_t = self._object_position(rng, obj, palm, object_R)

        def distance(points):
            return obj.signed_distance((points - object_t) @ object_R)

        # Palm against the object: slide the object along the normal until the flat hand is
        # PALM_GAP from its surface (a few fixed-point steps; the distance is 1-Lipschitz).
        for _ in range(6):
            object_t = object_t + (PALM_GAP - distance(rest_vertices).min()) * palm.normal
        axes = self._flexion_axes(joints, palm.normal)
        base = {(f, 0): self._rotation(palm.normal, rng.uniform(-0.08, 0.08)) for f in FINGERS}
        # Phase 1: knuckles (the other joints follow a little, like a relaxed hand); the thumb
        # swings in front of the palm (opposition about ``across x normal``) while flexing.
        swing = rng.uniform(*THUMB_OPPOSITION) * np.cross(palm.across, palm.normal)
        swing = swing + THUMB_CMC_FLEXION * axes["thumb"][0]
        knuckles = {
            f: {0: (axes[f][0], KNUCKLE_RANGE), 1: (axes[f][1], 0.3), 2: (axes[f][2], 0.2)}
            for f in FINGERS
        }
        knuckles["thumb"] = {
            0: (_normalize(swing), np.linalg.norm(swing)),
            1: (axes["thumb"][1], 0.3),
            2: (axes["thumb"][2], 0.2),
        }
        phase1 = self._close(base, knuckles, mano_shape, distance)
        rotations = self._apply(base, knuckles, {f: phase1[f][0] for f in knuckles})
        # Phase 2: the two distal joints wrap around the object.
        distal = {
            f: {1: (axes[f][1], DISTAL_RANGE), 2: (axes[f][2], DISTAL_RANGE * DISTAL_RATIO)}
            for f in (*FINGERS, "thumb")
        }
        distal["thumb"] = {1: (axes["thumb"][1], 1.0), 2: (axes["thumb"][2], 1.0)}
        phase2 = self._close(rotations, distal, mano_shape, distance)
        scales = {}
        for finger, (scale, touched) in phase2.items():
            if not touched and not phase1[finger][1]:
                scale *= rng.uniform(0.3, 0.7)  # missed the object: relax, do not clench
            scales[finger] = scale
        finger_pose = self._pose(self._apply(rotations, distal, scales), 1)[0]
        vertices, joints = self.forward(finger_pose[None], mano_shape)
        gaps = distance(vertices)
        touching = [
            f
            for f in FINGER_JOINTS
            if gaps[self.vertex_sets[f, 0]].min() < CONTACT_GAP + TOUCH_SLACK
        ]
        if gaps.min() < -PENETRATION_TOLERANCE or "thumb" not in touching or len(touching) < 3:
            return None
        curls = {f: (phase1[f][0], phase2[f][0]) for f in FINGER_JOINTS}
        return Grasp(finger_pose, object_R, object_t, curls, vertices, joints, float(gaps.min()))

    def open_hand(self, rng, mano_shape):
        """A hand pose without an object (the FreiHAND-format set): every finger flexes a
        random fraction of its knuckle and distal ranges, the thumb swings a random fraction of
        its opposition. Returns finger_pose (45,) (flat hand mean), vertices (778, 3) and
        joints (21, 3), canonical frame."""
        _, joints = self.rest(mano_shape)
        palm = PalmFrame.from_joints(joints)
        axes = self._flexion_axes(joints, palm.normal)
        moving = {
            f: {0: (axes[f][0], KNUCKLE_RANGE), 1: (axes[f][1], DISTAL_RANGE),
                2: (axes[f][2], DISTAL_RANGE * DISTAL_RATIO)}
            for f in FINGERS
        }  # fmt: skip
        swing = THUMB_OPPOSITION[1] * np.cross(palm.across, palm.normal)
        moving["thumb"] = {0: (_normalize(swing), np.linalg.norm(swing)),
                           1: (axes["thumb"][1], 1.0), 2: (axes["thumb"][2], 1.0)}  # fmt: skip
        scales = {f: rng.uniform(0.0, 0.8) for f in moving}
        finger_pose = self._pose(self._apply({}, moving, scales), 1)[0]
        vertices, joints = self.forward(finger_pose[None], mano_shape)
        return finger_pose, vertices, joints

    @staticmethod
    def _object_position(rng, obj, palm, object_R):
        """Object centre (3,) in front of the palm: along ``across`` anywhere the hand still
        fits on the object, along ``forward`` over the knuckles give or take, along the normal
        far enough to clear the palm (refined by the caller)."""
        extent = np.abs(object_R.T @ palm.across) @ (obj.corners().max(0) * 2)
        slack = max(extent / 2 - 0.045, 0.0)
        depth = np.abs(object_R.T @ palm.normal) @ (obj.corners().max(0) * 2)
        return (
            palm.centre
            + palm.across * rng.uniform(-slack, slack)
            + palm.forward * rng.uniform(0.0, 0.025)
            + palm.normal * (depth / 2 + 0.03)
        )


def _object_orientation(rng, obj):
    """Object rotation (3, 3): object axes -> palm coordinates (across, forward, normal).

    A power grasp: the object's longest axis lies across the fingers (like a bottle held in
    the fist). A box shows the palm a face whose extent along the fingers is its shortest
    edge, or its middle one when that is short enough to wrap (the fingers curl over that
    face's far edge); a cylinder lies across the palm or, when short, stands on it (lid grasp).
    Small random tilts make it less tidy.
    """
    half = obj.corners().max(0)
    shortest, middle, longest = np.argsort(half)
    if obj.spec.shape == "cylinder":
        lid = half[2] < LID_GRASP_HEIGHT / 2 and rng.random() < LID_GRASP_PROBABILITY
        # Lid grasp: x across, y forward, so the cylinder's z axis is along the palm normal.
        long_axis, forward_axis = (0, 1) if lid else (2, 0)
    elif 2 * half[middle] <= MAX_WRAP_WIDTH and rng.random() < 0.5:
        long_axis, forward_axis = longest, middle
    else:
        long_axis, forward_axis = longest, shortest
    R = np.zeros((3, 3))  # object coordinates -> palm coordinates
    R[0, long_axis] = rng.choice((-1.0, 1.0))
    R[1, forward_axis] = rng.choice((-1.0, 1.0))
    R[2] = np.cross(R[0], R[1])  # the remaining axis along the normal, keeping det +1
    tilt = axis_angle_to_matrix(
        torch.tensor(
            [[0.0, 0.0, rng.uniform(-0.35, 0.35)], [0.0, rng.uniform(-0.15, 0.15), 0.0]],
            dtype=torch.float64,
        )
    ).numpy()
    return tilt[0] @ tilt[1] @ R
