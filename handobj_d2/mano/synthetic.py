"""The project's synthetic MANO-format hand, generated procedurally (no MANO data).

``build_synthetic_mano`` returns the arrays of a MANO model file (``io.MANO_FIELDS``) for a hand
built by this module: a palm tube open at the wrist, four finger tubes growing out of its
distal end and a thumb tube growing out of a hole on its radial side, each finger ending in a
rounded cap whose apex is manopth's fingertip vertex. Like MANO's mesh it has 778 vertices and
1538 faces: a manifold surface with one 16-edge boundary loop (the wrist opening), so
faces = 2 * vertices - 2 - 16.

Rest pose, as MANO's right hand (metres): a flat hand, fingers along -x, the thumb on the +z
side, the palm facing -y (dorsal side +y), wrist near x = +0.096. Joints in MANO's order
(wrist; index, middle, pinky, ring, thumb, each 1-3). Proportions from hand anthropometry:
wrist to middle knuckle 9.7 cm, middle finger 4.5 / 2.7 / 2.3 cm (hand length 19.2 cm), 8.5 cm
across the knuckles, volume 0.32 l.

Flexion convention (rest-pose axes, as MANO's pose parameters): a finger joint flexes, curling
the bone after it towards the palm, by a positive rotation about ``bone x pad`` where the pad
faces the palm normal (-y), so the four fingers flex about +z (MANO's hands_mean curls them
with positive z too). The thumb's pad faces half-way between the palm normal and the fingers;
its joints flex about ``bone x pad`` and its first joint also swings it in front of the palm
(opposition) by a positive rotation about +x (``across x palm_normal``).

The left hand is the right one mirrored (x -> -x), faces re-wound, like MANO_LEFT.
"""

import functools
import pickle

import numpy as np
from scipy.optimize import lsq_linear

from ..utils.io import atomic_file

# MANO's kinematic tree: parents of the 16 joints (the root's parent is stored as 2**32 - 1).
KINTREE_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingers as MANO chains: first joint id and the manopth fingertip vertex of the right hand.
FINGERS = {
    "index": dict(joint=1, tip=317),
    "middle": dict(joint=4, tip=444),
    "pinky": dict(joint=7, tip=673),
    "ring": dict(joint=10, tip=556),
    "thumb": dict(joint=13, tip=745),
}
# Other vertex ids that must sit at the fingertips: manopth's left middle tip (445) and the
# HO3D-trained model's fingertips [728, 353, 442, 576, 694] (thumb, index, middle, ring, pinky).
PAD_VERTICES = {
    "middle": (445, 442),
    "thumb": (728,),
    "index": (353,),
    "ring": (576,),
    "pinky": (694,),
}
# manopth's root_palm joint is the mean of these two: palm centre, palmar and dorsal side.
PALM_VERTICES = (95, 22)

WRIST = np.array([0.096, 0.004, 0.004])  # MANO joint 0
PALM_NORMAL = np.array([0.0, -1.0, 0.0])  # out of the palm
# Per finger (radial to ulnar on the knuckle line): knuckle (MCP) position, direction in the
# x-z plane (degrees from -x towards +z), phalanx lengths (proximal, middle, distal to the tip,
# metres), width and thickness of the finger at its base (metres), half-width of its knuckle
# span on the palm (metres).
_FINGER_DESIGN = {
    "index": dict(mcp=(0.004, 0.004, 0.028), angle=6.0, lengths=(0.040, 0.023, 0.021),
                  size=(0.0205, 0.0185), span=(0.0400, 0.0168)),
    "middle": dict(mcp=(-0.001, 0.005, 0.0055), angle=0.0, lengths=(0.045, 0.027, 0.023),
                   size=(0.0205, 0.0188), span=(0.0168, -0.0052)),
    "ring": dict(mcp=(0.006, 0.004, -0.0155), angle=-5.0, lengths=(0.042, 0.026, 0.022),
                 size=(0.0195, 0.0178), span=(-0.0052, -0.0253)),
    "pinky": dict(mcp=(0.018, 0.002, -0.0345), angle=-11.0, lengths=(0.033, 0.019, 0.020),
                  size=(0.0175, 0.0160), span=(-0.0253, -0.0440)),
}  # fmt: skip
# Thumb: first joint (CMC, inside the thenar), direction, lengths, base width and thickness.
_THUMB_DESIGN = dict(
    cmc=(0.072, -0.002, 0.022),
    direction=(-0.64, -0.06, 0.77),
    lengths=(0.040, 0.031, 0.026),
    size=(0.026, 0.023),
)
_KNUCKLE_EDGES = 4  # mesh edges per finger along each side of the palm's distal loop
_RING = 2 * _KNUCKLE_EDGES + 2  # vertices of every finger ring
_PALM_RING = 2 * (4 * _KNUCKLE_EDGES + 1)  # vertices of the palm loops
_WRIST_RING = 16  # MANO's wrist opening
# Palm loops: fraction of the way from the wrist to the knuckle line, and vertex count.
_PALM_STATIONS = (
    (0.0, _WRIST_RING), (0.07, 27), (0.15, _PALM_RING), (0.27, _PALM_RING), (0.39, _PALM_RING),
    (0.51, _PALM_RING), (0.64, _PALM_RING), (0.77, _PALM_RING), (0.89, _PALM_RING),
    (1.0, _PALM_RING),
)  # fmt: skip
_THUMB_HOLE_LOOPS = (2, 5)  # palm loops bounding the thumb's hole (three quads along)
_SEED = 20210619


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _step(u, centre, half_width):
    """Smooth 0 -> 1 transition of ``u`` around ``centre`` over +-half_width."""
    return _smoothstep((u - centre) / (2 * half_width) + 0.5)


class _MeshBuilder:
    """Vertices, per-vertex labels and outward-wound triangles of tubes joined loop to loop."""

    def __init__(self):
        self.points, self.part, self.u, self.radial, self.faces = [], [], [], [], []

    def add(self, points, part, u, radial):
        start = sum(len(p) for p in self.points)
        self.points.append(np.asarray(points, dtype=np.float64).reshape(-1, 3))
        n = len(self.points[-1])
        self.part.append(np.full(n, part))
        self.u.append(np.broadcast_to(np.asarray(u, dtype=np.float64), (n,)).copy())
        self.radial.append(np.asarray(radial, dtype=np.float64).reshape(n, 3))
        return np.arange(start, start + n)

    def band(self, loop_a, loop_b, t_a, t_b):
        """Triangles joining loop_a to loop_b (both counter-clockwise about the tube's direction,
        a behind b); t_a, t_b: increasing angle fractions in [0, 1) of their vertices."""
        i = j = 0
        na, nb = len(loop_a), len(loop_b)
        ta = np.append(t_a, t_a[0] + 1.0)
        tb = np.append(t_b, t_b[0] + 1.0)
        while i < na or j < nb:
            a0, a1 = loop_a[i % na], loop_a[(i + 1) % na]
            b0, b1 = loop_b[j % nb], loop_b[(j + 1) % nb]
            if j >= nb or (i < na and ta[i + 1] <= tb[j + 1]):
                self.faces.append((a0, a1, b0))
                i += 1
            else:
                self.faces.append((a0, b1, b0))
                j += 1

    def cap(self, loop, apex):
        n = len(loop)
        self.faces.extend((loop[k], loop[(k + 1) % n], apex) for k in range(n))

    def arrays(self):
        """Points, labels and faces, without the vertices no face uses (inside holes);
        ``new_id`` maps the ids given by :meth:`add` to the returned ones."""
        faces = np.asarray(self.faces, dtype=np.int64)
        used = np.zeros(sum(len(p) for p in self.points), dtype=bool)
        used[faces.ravel()] = True
        new_id = np.cumsum(used) - 1
        self.new_id = np.where(used, new_id, -1)
        return (
            np.concatenate(self.points)[used],
            np.concatenate(self.part)[used],
            np.concatenate(self.u)[used],
            np.concatenate(self.radial)[used],
            new_id[faces],
        )


def _angle_fraction(points, centre, side, up):
    """Angles (fractions of a turn, counter-clockwise from ``side`` towards ``up``)."""
    d = points - centre
    return (np.arctan2(d @ up, d @ side) / (2 * np.pi)) % 1.0


def _fractions_from_start(t):
    """Angle fractions made increasing from the first vertex (which gets 0)."""
    return (t - t[0]) % 1.0


def _pad_direction(direction, thumb=False):
    """Unit direction a finger's pad faces: the palm normal; for the thumb, half-way between
    the palm normal and the fingers (``normal x direction``)."""
    if not thumb:
        return PALM_NORMAL
    return _unit(PALM_NORMAL + np.cross(PALM_NORMAL, direction))


def _frame(direction, pad):
    """(side, up) completing a tube direction: up = the nail side (-pad) made orthogonal to
    it, side = up x direction, so angles from side towards up turn about the direction."""
    up = _unit(-pad - (-pad @ direction) * direction)
    return np.cross(up, direction), up


def _interp(s, table):
    stations, values = zip(*table)
    return np.interp(s, stations, values)


# Palm cross-section along the palm (fraction s from the wrist to the knuckles): half-width,
# half-thickness (metres). Centre height is constant; the knuckle line sets where it ends.
_PALM_HALF_WIDTH = ((0.0, 0.029), (0.3, 0.0385), (0.7, 0.0415), (1.0, 0.042))
_PALM_HALF_THICKNESS = ((0.0, 0.0175), (0.3, 0.0178), (0.65, 0.0165), (1.0, 0.013))
_PALM_Y, _PALM_Z = 0.004, -0.002
_WRIST_LOOP_X = 0.100
_SUPERELLIPSE = 3.0  # exponent of the palm's rounded-rectangle cross-section
_EDGE_PROFILE_SCALE = 1.04  # palm sides stay ~half as thick as the middle


class _Hand:
    """Builds the right hand's mesh and keeps what the model arrays need."""

    def __init__(self):
        self.mesh = _MeshBuilder()
        self.joints = np.zeros((16, 3))
        self.joints[0] = WRIST
        self.fingers = {}
        self._build_palm()
        for name in ("index", "middle", "ring", "pinky"):
            self._build_finger(name)
        self._build_thumb()

    # -- palm ------------------------------------------------------------------------------
    def _knuckle_rows(self):
        """z of the distal loop's dorsal row, radial to ulnar (17,), knuckle x at those z."""
        z = []
        for name in ("index", "middle", "ring", "pinky"):
            a, b = _FINGER_DESIGN[name]["span"]
            z.extend(np.linspace(a, b, _KNUCKLE_EDGES + 1)[: -1 if name != "pinky" else None])
        z = np.asarray(z)
        mcp = np.array([_FINGER_DESIGN[n]["mcp"] for n in ("pinky", "ring", "middle", "index")])
        return z, np.interp(z, mcp[:, 2], mcp[:, 0])

    def _palm_loop(self, s, count):
        """Points (count, 3) of the palm loop at fraction s, counter-clockwise about -x,
        starting at the radial-dorsal corner; and their normalised (z, y) coordinates."""
        half_w = _interp(s, _PALM_HALF_WIDTH)
        half_t = _interp(s, _PALM_HALF_THICKNESS)
        z_row, x_row = self._knuckle_rows()
        zeta_row = (z_row - _PALM_Z) / (_interp(1.0, _PALM_HALF_WIDTH))
        profile = (1 - np.abs(zeta_row / _EDGE_PROFILE_SCALE) ** _SUPERELLIPSE) ** (
            1 / _SUPERELLIPSE
        )
        if count == _PALM_RING:
            zeta = np.concatenate([zeta_row, zeta_row[::-1]])
            eta = np.concatenate([profile, -profile[::-1]])
            knuckle_x = np.concatenate([x_row, x_row[::-1]])
        else:
            start = np.arctan2(profile[0], zeta_row[0])
            start = np.arctan(np.tan(start) ** (_SUPERELLIPSE / 2))
            theta = start + 2 * np.pi * np.arange(count) / count
            c, si = np.cos(theta), np.sin(theta)
            zeta = np.sign(c) * np.abs(c) ** (2 / _SUPERELLIPSE) * zeta_row[0]
            eta = np.sign(si) * np.abs(si) ** (2 / _SUPERELLIPSE)
            knuckle_x = np.interp(zeta, zeta_row[::-1], x_row[::-1])
        x = _WRIST_LOOP_X + s * (knuckle_x - _WRIST_LOOP_X)
        points = np.stack([x, _PALM_Y + half_t * eta, _PALM_Z + half_w * zeta], 1)
        return points, np.stack([zeta, eta], 1)

    def _build_palm(self):
        mesh = self.mesh
        loops, fractions = [], []
        for s, count in _PALM_STATIONS:
            points, normalised = self._palm_loop(s, count)
            radial = np.zeros_like(points)
            radial[:, 1] = np.sign(normalised[:, 1])
            loops.append(mesh.add(points, "palm", 0.0, radial))
            t = np.arctan2(normalised[:, 1], normalised[:, 0]) / (2 * np.pi)
            fractions.append(_fractions_from_start(t % 1.0))
        first, last = _THUMB_HOLE_LOOPS
        hole_quads = (_PALM_RING - 2, _PALM_RING - 1)  # radial-palmar corner and radial side
        for k in range(len(loops) - 1):
            a, b = loops[k], loops[k + 1]
            if len(a) != len(b):
                mesh.band(a, b, fractions[k], fractions[k + 1])
                continue
            n = len(a)
            for q in range(n):
                if first <= k < last and q in hole_quads:
                    continue
                q1 = (q + 1) % n
                mesh.faces.append((a[q], a[q1], b[q]))
                mesh.faces.append((a[q1], b[q1], b[q]))
        k0, k1 = hole_quads[0], (hole_quads[-1] + 1) % _PALM_RING
        hole = [loops[first][k0], loops[first][hole_quads[1]], loops[first][k1]]
        hole += [loops[k][k1] for k in range(first + 1, last + 1)]
        hole += [loops[last][hole_quads[1]], loops[last][k0]]
        hole += [loops[k][k0] for k in range(last - 1, first, -1)]
        self.palm_loops, self.thumb_hole = loops, np.asarray(hole)

    # -- fingers ---------------------------------------------------------------------------
    def _tube(self, name, base_loop, origin, direction, stations, sizes, joints):
        """Rings along a finger from its base loop to a rounded tip; returns the apex id.

        stations (R,) distances from ``origin`` along ``direction``, sizes (R, 2) width and
        thickness of each ring, joints: distances of the finger's three joints (for labels).
        """
        mesh = self.mesh
        side, up = _frame(direction, _pad_direction(direction, name == "thumb"))
        t_base = _angle_fraction(np.concatenate(mesh.points)[base_loop], origin, side, up)
        start = t_base[0]
        t_base = _fractions_from_start(t_base)
        if np.any(np.diff(t_base) <= 0):
            raise RuntimeError(f"synthetic hand: the {name}'s base loop does not turn about it")
        angles = 2 * np.pi * (start + np.arange(_RING) / _RING)
        t_ring = np.arange(_RING) / _RING
        previous, previous_t = base_loop, t_base
        for u, (width, thickness) in zip(stations, sizes):
            radial = np.cos(angles)[:, None] * side + np.sin(angles)[:, None] * up
            offsets = (
                np.cos(angles)[:, None] * side * width / 2
                + np.sin(angles)[:, None] * up * thickness / 2
            )
            ring = mesh.add(origin + u * direction + offsets, name, u, radial)
            mesh.band(previous, ring, previous_t, t_ring)
            previous, previous_t = ring, t_ring
        apex = mesh.add(origin + joints[-1] * direction, name, joints[-1], direction)[0]
        mesh.cap(previous, apex)
        return apex, previous

    def _stations(self, lengths, size, tip_size, start):
        """Ring stations of a finger: one between its base and first joint (or two for the
        thumb), rings at and around the two joints, two cap rings; sizes taper to the tip."""
        a, b, c = lengths[0], lengths[0] + lengths[1], sum(lengths)
        tip_radius = tip_size[1] / 2
        stations = list(start) + [a - 0.0055, a, a + 0.0055, b - 0.0045, b, b + 0.0045]
        caps = np.radians([62.0, 32.0])
        stations += list(c - tip_radius * (1 - np.cos(caps)))
        stations = np.asarray(stations)
        fraction = np.clip(stations / c, 0, 1)
        sizes = np.asarray(size) + fraction[:, None] * (np.asarray(tip_size) - size)
        knuckles = np.isin(np.arange(len(stations)), [len(start) + 1, len(start) + 4])
        sizes[knuckles] *= 1.05  # joints slightly thicker
        sizes[-2:] *= np.sin(caps)[:, None]
        return stations, sizes, (0.0, a, b, c)

    def _build_finger(self, name):
        design = _FINGER_DESIGN[name]
        k = ("index", "middle", "ring", "pinky").index(name)
        loop = self.palm_loops[-1]
        e = _KNUCKLE_EDGES
        dorsal = loop[k * e : k * e + e + 1]
        palmar_start = _PALM_RING // 2 + (3 - k) * e
        palmar = loop[palmar_start : palmar_start + e + 1]
        base_loop = np.concatenate([dorsal, palmar])
        angle = np.radians(design["angle"])
        direction = np.array([-np.cos(angle), 0.0, np.sin(angle)])
        origin = np.asarray(design["mcp"], dtype=np.float64)
        size = np.asarray(design["size"])
        stations, sizes, joints = self._stations(
            design["lengths"], size, size * (0.82, 0.74), start=[0.42 * design["lengths"][0]]
        )
        apex, last_ring = self._tube(name, base_loop, origin, direction, stations, sizes, joints)
        first = FINGERS[name]["joint"]
        self.joints[first : first + 3] = origin + np.outer(joints[:3], direction)
        self.fingers[name] = dict(
            origin=origin, direction=direction, joints=joints, apex=apex, last_ring=last_ring
        )

    def _build_thumb(self):
        design = _THUMB_DESIGN
        origin = np.asarray(design["cmc"], dtype=np.float64)
        direction = _unit(np.asarray(design["direction"], dtype=np.float64))
        size = np.asarray(design["size"])
        stations, sizes, joints = self._stations(
            design["lengths"], size, size * (0.80, 0.72), start=[0.019, 0.028]
        )
        apex, last_ring = self._tube(
            "thumb", self.thumb_hole, origin, direction, stations, sizes, joints
        )
        self.joints[13:16] = origin + np.outer(joints[:3], direction)
        self.fingers["thumb"] = dict(
            origin=origin, direction=direction, joints=joints, apex=apex, last_ring=last_ring
        )

    # -- model arrays ------------------------------------------------------------------------
    def arrays(self):
        v, part, u, radial, faces = self.mesh.arrays()
        self.v, self.part, self.u, self.radial = v, part, u, radial
        new_id = self.mesh.new_id
        self.thumb_hole = new_id[self.thumb_hole]
        for finger in self.fingers.values():
            finger["apex"], finger["last_ring"] = (
                new_id[finger["apex"]],
                new_id[finger["last_ring"]],
            )
        weights = self._skinning_weights()
        return dict(
            v_template=v,
            f=faces,
            weights=weights,
            J_regressor=self._joint_regressor(),
            shapedirs=self._shape_directions(),
            posedirs=self._pose_correctives(weights),
        )

    def _thumb_influence(self):
        """Weight (V,) of the thumb's first joint on palm vertices around the thumb's hole."""
        hole = self.v[self.thumb_hole]
        distance = np.linalg.norm(self.v[:, None] - hole[None], axis=-1).min(1)
        return 0.5 * (1 - _smoothstep(distance / 0.025))

    def _skinning_weights(self):
        """(778, 16): each finger vertex bound to the bone it lies on, blended over a few
        millimetres around each joint; palm vertices to the wrist, blended into the knuckles
        and (around the thumb's hole) into the thumb."""
        v, part, u = self.v, self.part, self.u
        weights = np.zeros((len(v), 16))
        palm = part == "palm"
        for name, finger in self.fingers.items():
            first = FINGERS[name]["joint"]
            joints = finger["joints"]
            on = part == name
            if name == "thumb":
                start = _step(u[on], 0.017, 0.007)
            else:
                start = _step(u[on], 0.003, 0.010)
            a = _step(u[on], joints[1], 0.006)
            b = _step(u[on], joints[2], 0.005)
            weights[on, 0] = 1 - start
            weights[on, first] = start - a
            weights[on, first + 1] = a - b
            weights[on, first + 2] = b
        # Palm: a soft assignment of every palm vertex to the fingers by its z, then each
        # finger's knuckle blends in near the knuckle line.
        names = ("index", "middle", "ring", "pinky")
        centres = np.array([_FINGER_DESIGN[n]["mcp"][2] for n in names])
        share = np.exp(-(((v[palm, 2:3] - centres) / 0.007) ** 2))
        share /= share.sum(1, keepdims=True)
        thumb = self._thumb_influence()[palm]
        rest = 1 - thumb
        weights[palm, 13] = thumb
        knuckle_total = np.zeros(palm.sum())
        for k, name in enumerate(names):
            finger = self.fingers[name]
            along = (v[palm] - finger["origin"]) @ finger["direction"]
            knuckle = share[:, k] * _step(along, 0.003, 0.010) * rest
            weights[palm, FINGERS[name]["joint"]] = knuckle
            knuckle_total += knuckle
        weights[palm, 0] = rest - knuckle_total
        return weights

    def _joint_regressor(self):
        """(16, 778): each joint a non-negative weighted mean of the vertices around it (of
        its own bone and its parent's) that puts it exactly at its designed position."""
        regressor = np.zeros((16, len(self.v)))
        parts = {0: ("palm",)}
        for name in FINGERS:
            first = FINGERS[name]["joint"]
            parts[first] = ("palm", name)
            parts[first + 1] = parts[first + 2] = (name,)
        for joint, allowed in parts.items():
            candidates = np.flatnonzero(np.isin(self.part, allowed))
            distance = np.linalg.norm(self.v[candidates] - self.joints[joint], axis=1)
            count = 32 if joint == 0 else 20 if len(allowed) == 1 else 30
            near = candidates[np.argsort(distance)[:count]]
            prior = np.exp(-((np.sort(distance)[:count] / 0.01) ** 2))
            prior /= prior.sum()
            # min |w - prior|^2 subject to w >= 0, sum w = 1, w @ points = joint (the
            # constraints weighted strongly).
            constraint = np.vstack([self.v[near].T, np.ones(count)])
            target = np.append(self.joints[joint], 1.0)
            strength = 1e4
            solution = lsq_linear(
                np.vstack([strength * constraint, np.eye(count)]),
                np.concatenate([strength * target, prior]),
                bounds=(0.0, 1.0),
            )
            regressor[joint, near] = solution.x / solution.x.sum()
        return regressor

    def _shape_directions(self):
        """(778, 3, 10) smooth shape components, largest first: size, finger length, palm
        width, thickness, palm length, thumb size, radial-ulnar finger lengths, fingers vs
        palm thickness, distal vs proximal phalanges, finger spread."""
        v, part, u = self.v, self.part, self.u
        dirs = np.zeros((len(v), 3, 10))
        palm = part == "palm"
        wrist = self.joints[0]
        forward = np.array([-1.0, 0.0, 0.0])
        dirs[:, :, 0] = 0.045 * (v - wrist)
        dirs[palm, 2, 2] = 0.07 * (v[palm, 2] - _PALM_Z)
        dirs[palm, 1, 3] = 0.08 * (v[palm, 1] - _PALM_Y)
        dirs[palm, :, 4] = 0.06 * np.outer((v[palm] - wrist) @ forward, forward)
        dirs[palm, 1, 7] = -0.06 * (v[palm, 1] - _PALM_Y)
        gradient = {"index": 1.0, "middle": 0.4, "ring": -0.4, "pinky": -1.0, "thumb": 0.0}
        for name, finger in self.fingers.items():
            on = part == name
            origin, direction = finger["origin"], finger["direction"]
            a = finger["joints"][1]
            along = np.outer(u[on], direction)
            offset = v[on] - origin - along  # from the finger's axis
            dirs[on, :, 1] = 0.05 * along
            dirs[on, 2, 2] = 0.07 * (origin[2] - _PALM_Z)
            dirs[on, :, 3] = 0.08 * offset
            dirs[on, :, 4] = 0.06 * ((origin - wrist) @ forward) * forward
            if name == "thumb":
                dirs[on, :, 5] = 0.07 * (v[on] - origin)
            dirs[on, :, 6] = 0.05 * gradient[name] * along
            dirs[on, :, 7] = 0.06 * offset
            shift = np.where(u[on] <= a, -0.5 * u[on], u[on] - 1.5 * a)
            dirs[on, :, 8] = 0.04 * np.outer(shift, direction)
            spin = np.cross(PALM_NORMAL, v[on] - origin)
            dirs[on, :, 9] = 0.06 * gradient[name] * spin
        return dirs

    def _pose_correctives(self, weights):
        """(778, 3, 135): as a joint bends, the skin around it swells outwards by up to 2 mm
        times (1 - cos angle), countering the volume linear blend skinning loses there. The
        pose feature of joint j is (R_j - I) flattened, so 1 - cos = -trace(R_j - I) / 2."""
        posedirs = np.zeros((len(self.v), 3, 135))
        for joint in range(1, 16):
            parent = KINTREE_PARENTS[joint]
            around = np.clip(4 * weights[:, joint] * weights[:, parent], 0, 1)
            swell = -0.5 * 0.002 * around[:, None] * self.radial
            for diagonal in (0, 4, 8):
                posedirs[:, :, 9 * (joint - 1) + diagonal] = swell
        return posedirs

    def flexion_axes(self):
        """(15, 3) rest-pose flexion axis of every finger joint (MANO order 1-15): bone x pad
        direction (a positive rotation curls the finger towards its pad); the thumb's first
        joint opposes (swings the thumb in front of the palm) about across x palm normal."""
        axes = np.zeros((15, 3))
        for name, finger in self.fingers.items():
            first = FINGERS[name]["joint"]
            pad = _pad_direction(finger["direction"], name == "thumb")
            axes[first - 1 : first + 2] = _unit(np.cross(finger["direction"], pad))
        across = np.array([0.0, 0.0, 1.0])
        axes[12] = np.cross(across, PALM_NORMAL)
        return axes


def _pose_vector(per_joint):
    """{MANO joint id (1-15): (3,) axis-angle} -> (45,) finger pose."""
    pose = np.zeros((15, 3))
    for joint, value in per_joint.items():
        pose[joint - 1] = value
    return pose.ravel()


def _synergies(axes):
    """(45, 45) orthonormal rows: coherent hand synergies first (closing the hand, knuckles vs
    finger joints, thumb opposition, spread, pointing, ulnar vs radial fingers, thumb curl),
    completed to a basis by QR of fixed random directions."""
    fingers = {"index": 1, "middle": 4, "ring": 10, "pinky": 7}
    spread = {"index": -1.0, "middle": -0.3, "ring": 0.4, "pinky": 1.0}

    def finger_pose(levels, which=fingers, scale=None):
        per_joint = {}
        for name, first in fingers.items():
            if name in which:
                factor = 1.0 if scale is None else scale[name]
                for level, amount in enumerate(levels):
                    per_joint[first + level] = factor * amount * axes[first + level - 1]
        return per_joint

    thumb = {13: 0.6 * axes[12], 14: 0.5 * axes[13], 15: 0.5 * axes[14]}
    wanted = [
        _pose_vector({**finger_pose((1.0, 1.0, 0.7)), **thumb}),
        _pose_vector(finger_pose((1.0, -0.8, -0.6))),
        _pose_vector({13: axes[12], 14: 0.3 * axes[13], 15: 0.3 * axes[14]}),
        _pose_vector({f + 0: spread[n] * PALM_NORMAL for n, f in fingers.items()}),
        _pose_vector(
            finger_pose((1.0, 1.0, 0.8), scale={"index": -1.0, "middle": 0.6, "ring": 0.6,
                                                 "pinky": 0.6})
        ),
        _pose_vector(
            finger_pose((1.0, 1.0, 0.8), scale={"index": -0.6, "middle": -0.6, "ring": 1.0,
                                                 "pinky": 1.0})
        ),
        _pose_vector({14: axes[13], 15: axes[14]}),
    ]  # fmt: skip
    rng = np.random.default_rng(_SEED)
    basis = np.concatenate([np.stack(wanted, 1), rng.standard_normal((45, 45 - len(wanted)))], 1)
    q, r = np.linalg.qr(basis)
    return (q * np.sign(np.diag(r))).T


def _relaxed_pose(axes):
    """(45,) a slightly curled, relaxed hand (MANO's hands_mean role)."""
    curl = {"index": (0.3, 0.45, 0.2), "middle": (0.35, 0.5, 0.25),
            "ring": (0.4, 0.55, 0.25), "pinky": (0.45, 0.6, 0.3)}  # fmt: skip
    per_joint = {13: 0.4 * axes[12], 14: 0.3 * axes[13], 15: 0.3 * axes[14]}
    for name, levels in curl.items():
        first = FINGERS[name]["joint"]
        for level, amount in enumerate(levels):
            per_joint[first + level] = amount * axes[first + level - 1]
    return _pose_vector(per_joint)


def _special_vertex_order(hand, count):
    """Vertex order (count,) that puts the fingertips, pads and palm centre at the ids
    manopth and HO3D use: new vertex i is old vertex order[i]."""
    wanted = {}
    for name, spec in FINGERS.items():
        finger = hand.fingers[name]
        wanted[spec["tip"]] = finger["apex"]
        ring = finger["last_ring"]
        pad = _pad_direction(finger["direction"], name == "thumb")
        pads = ring[np.argsort(-(hand.v[ring] @ pad))]
        for vertex_id, old in zip(PAD_VERTICES[name], pads):
            wanted[vertex_id] = old
    centre = (hand.joints[0] + hand.joints[4]) / 2
    palm = np.flatnonzero(hand.part == "palm")
    for vertex_id, sign in zip(PALM_VERTICES, (-1.0, 1.0)):
        side = palm[np.sign(hand.radial[palm, 1]) == sign]
        gap = np.linalg.norm((hand.v[side] - centre)[:, [0, 2]], axis=1)
        wanted[vertex_id] = side[np.argmin(gap)]
    order = np.arange(count)
    for vertex_id, old in wanted.items():
        position = int(np.flatnonzero(order == old)[0])
        order[[vertex_id, position]] = order[[position, vertex_id]]
    return order


def _right_hand():
    hand = _Hand()
    model = hand.arrays()
    order = _special_vertex_order(hand, len(model["v_template"]))
    inverse = np.argsort(order)
    model["f"] = inverse[model["f"]]
    for key in ("v_template", "weights", "shapedirs", "posedirs"):
        model[key] = model[key][order]
    model["J_regressor"] = model["J_regressor"][:, order]
    axes = hand.flexion_axes()
    parents = np.array(KINTREE_PARENTS, dtype=np.int64)
    parents[0] = 2**32 - 1
    model["kintree_table"] = np.stack([parents, np.arange(16)])
    model["hands_components"] = _synergies(axes)
    model["hands_mean"] = _relaxed_pose(axes)
    model["bs_style"], model["bs_type"] = "lbs", "lrotmin"
    return model


def _mirror(model):
    """The left hand: x -> -x, faces re-wound, axis-angles (x, y, z) -> (x, -y, -z)."""
    flip = np.array([-1.0, 1.0, 1.0])
    left = dict(model)
    left["v_template"] = model["v_template"] * flip
    left["f"] = model["f"][:, ::-1].copy()
    left["shapedirs"] = model["shapedirs"] * flip[None, :, None]
    feature_sign = np.outer(flip, flip).ravel()  # (R - I)_ab of a mirrored R: sign s_a s_b
    left["posedirs"] = (
        model["posedirs"] * flip[None, :, None] * np.tile(feature_sign, 15)[None, None]
    )
    axis_sign = np.tile(-flip, 15)
    left["hands_components"] = model["hands_components"] * axis_sign
    left["hands_mean"] = model["hands_mean"] * axis_sign
    return left


@functools.lru_cache(maxsize=2)
def _cached(side):
    model = _right_hand()
    return _mirror(model) if side == "left" else model


def build_synthetic_mano(side="right"):
    """The synthetic hand as a MANO model dict (MANO's field names and shapes, metres).

    Deterministic and cached: every call returns fresh copies of the same arrays.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in _cached(side).items()}


def write_synthetic_mano(path, side="right"):
    """Write the synthetic hand as a MANO-format pickle (plain numpy arrays, protocol 2),
    atomically (a temporary file in the same folder, then renamed)."""
    with atomic_file(path) as f:
        pickle.dump(build_synthetic_mano(side), f, protocol=2)
    return path
