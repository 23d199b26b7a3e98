"""Geometry shared by every part of the package: rotations, camera frames, projection, joint
orders, boxes and object control points. Everything else imports from here.

Conventions
-----------
* 3D points are in metres. Camera frames are OpenCV (x right, y down, z forward) unless a name
  says ``opengl`` (x right, y up, z backward; HO3D's annotations). ``OPENGL_TO_OPENCV`` maps one
  to the other in both directions.
* Intrinsics ``K`` are 3x3 pixel matrices; image points are pixels, (x, y) with x to the right.
* Rotations act on column vectors: ``x_cam = R @ x_obj + t``.
* Hand joints use the 21-joint order of manopth (``JOINT_NAMES``): wrist, then thumb, index,
  middle, ring, pinky, each from the knuckle to the tip. HO3D (and the HO3D challenge) list
  them in MANO's own order (16 MANO joints, then the five tips): ``HO3D_TO_MANOPTH`` reorders.
* Boxes are ``[x1, y1, x2, y2]`` in pixels.

Functions accept torch tensors unless their docstring says numpy; the numpy ones are for data
loading, where the work is per sample.
"""

import itertools

import numpy as np
import torch
import torch.nn.functional as F

# Flip between OpenGL and OpenCV camera frames (its own inverse).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])

# 21-joint order used throughout the package (manopth's order).
JOINT_NAMES = (
    "wrist",
    "thumb_mcp", "thumb_pip", "thumb_dip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)  # fmt: skip
# ``joints_manopth = joints_mano_order[HO3D_TO_MANOPTH]``. MANO's order is the 16 kinematic
# joints (wrist, index 1-3, middle 1-3, pinky 1-3, ring 1-3, thumb 1-3) then the fingertips
# (thumb, index, middle, ring, pinky). HO3D's handJoints3D and the challenge use MANO's order.
HO3D_TO_MANOPTH = np.array(
    [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
)
# ``joints_ho3d = joints_manopth[MANOPTH_TO_HO3D]`` (the argsort of the list above).
MANOPTH_TO_HO3D = np.argsort(HO3D_TO_MANOPTH)
# Parent of every joint in the manopth order (-1 for the wrist): the skeleton to draw.
JOINT_PARENTS = np.array([-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19])
# The wrist and the first joint of every finger (the wrist's children in MANO's kinematic tree):
# their offsets from the wrist depend on the global rotation and the hand's shape only, not on
# how the fingers bend.
PALM_JOINTS = (0, 1, 5, 9, 13, 17)


def opengl_to_opencv(points):
    """3D points (..., 3) from the OpenGL camera frame (y up, z backward) to the OpenCV one
    (y down, z forward): y and z negated (numpy or torch)."""
    if torch.is_tensor(points):
        return points * points.new_tensor([1.0, -1.0, -1.0])
    return points * OPENGL_TO_OPENCV.diagonal()


def opencv_to_opengl(points):
    """3D points (..., 3) from the OpenCV camera frame to the OpenGL one: the same flip as
    ``opengl_to_opencv`` (its own inverse), named for the direction (numpy or torch)."""
    return opengl_to_opencv(points)


# ----------------------------------------------------------------------------------------------
# Rotations (torch, batched over leading dims)


def axis_angle_to_matrix(axis_angle, eps=1e-8):
    """Rodrigues' formula. axis_angle (..., 3) radians -> rotation matrices (..., 3, 3).

    Differentiable everywhere, including at the zero rotation (``eps`` guards the division).
    """
    angle = torch.sqrt((axis_angle * axis_angle).sum(-1, keepdim=True) + eps * eps)
    axis = axis_angle / angle
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis.shape, 3)
    outer = axis[..., :, None] * axis[..., None, :]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return cos * eye + sin * skew + (1 - cos) * outer


def matrix_to_axis_angle(matrix):
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3) radians, angle in [0, pi].

    Goes through the unit quaternion, choosing per matrix the best-conditioned of the four
    ways to extract it (Shepperd's method), so it is stable near 0 and near pi.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Row k is 4 * q_k * (w, x, y, z) for k = w, x, y, z.
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )
    best = torch.diagonal(candidates, dim1=-2, dim2=-1).argmax(-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    quat = F.normalize(torch.gather(candidates, -2, index)[..., 0, :], dim=-1)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    sin_half = quat[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, quat[..., :1])
    # angle / sin(angle / 2) -> 2 as the angle -> 0.
    small = sin_half < 1e-6
    scale = torch.where(small, torch.full_like(angle, 2.0), angle / sin_half.clamp_min(1e-6))
    return quat[..., 1:] * scale


def rot6d_to_matrix(rot6d):
    """6D rotation representation (Zhou et al. 2019) (..., 6) -> matrices (..., 3, 3).

    The first three numbers give the first column, the last three the (unnormalised) second;
    Gram-Schmidt makes an orthonormal frame (manopth's ``compute_rotation_matrix_from_ortho6d``).
    """
    x = F.normalize(rot6d[..., 0:3], dim=-1)
    z = F.normalize(torch.cross(x, rot6d[..., 3:6], dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    return torch.stack([x, y, z], -1)


def rot6d_to_matrix_robust(rot6d):
    """Symmetric variant of :func:`rot6d_to_matrix` (manopth's ``robust_rot=True``): both input
    vectors play the same role, bisected before orthonormalising."""
    x = F.normalize(rot6d[..., 0:3], dim=-1)
    y = F.normalize(rot6d[..., 3:6], dim=-1)
    middle = F.normalize(x + y, dim=-1)
    orth = F.normalize(x - y, dim=-1)
    x = F.normalize(middle + orth, dim=-1)
    y = F.normalize(middle - orth, dim=-1)
    z = F.normalize(torch.cross(x, y, dim=-1), dim=-1)
    return torch.stack([x, y, z], -1)


def project_to_rotation(matrix):
    """Closest rotation (SVD projection, reflections removed) to each (..., 3, 3) matrix."""
    u, _, vh = torch.linalg.svd(matrix)
    sign = torch.linalg.det(u @ vh).sign()
    u = torch.cat([u[..., :2], u[..., 2:] * sign[..., None, None]], -1)
    return u @ vh


# ----------------------------------------------------------------------------------------------
# Cameras


def roll_matrix(angle):
    """Camera roll: rotation (3, 3) numpy by ``angle`` radians about the optical (z) axis. The
    image of a rolled camera turns by ``-angle`` about the principal point: pixels move by
    ``K @ roll_matrix(angle) @ K^-1`` (an in-plane rotation for square pixels)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def project_points(points, K):
    """Pinhole projection. points (..., N, 3) in the camera frame (OpenCV, z > 0), K (..., 3, 3)
    -> pixels (..., N, 2). Works on numpy arrays and torch tensors."""
    uvw = points @ K.swapaxes(-1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def intrinsics_matrix(intrinsics):
    """Camera matrix (3, 3) px from [fx, fy, cx, cy] (pixels); a ValueError unless both focal
    lengths are positive."""
    fx, fy, cx, cy = intrinsics
    if fx <= 0 or fy <= 0:
        raise ValueError(f"intrinsics: focal lengths must be positive, got {fx}, {fy}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def default_intrinsics(width, height):
    """Camera matrix (3, 3) px assumed for images without intrinsics: focal = the longer image
    side in pixels (about a 53-degree field of view), principal point at the image centre."""
    focal = float(max(width, height))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def estimate_root_translation(joints2d, joints3d, K, joints=None, reweightings=2):
    """Camera-frame position of a root-relative 3D skeleton that best explains its 2D joints.

    First the weak-perspective fit, always in front of the camera: the fitted joints' centroid
    at the depth where their 3D spread (x, y) projects to their 2D spread, on the ray through
    their 2D centroid. Then least squares on the pinhole equations, linear in the translation T
    (``f_a (X_a + T_a) = (u_a - c_a)(Z + T_z)``), each joint's rows divided by its depth from
    the previous solution (``reweightings`` times) so that pixel errors weigh alike. The
    perspective solution is kept where every fitted joint lies in front of the camera and its
    reprojection error is not larger than the weak-perspective one's: exact for consistent
    2D and 3D joints, and never behind the camera or worse for a weak model's inconsistent
    ones. ``joints``: indices of the joints to fit (e.g. ``PALM_JOINTS``); all by default.
    numpy, batched: joints2d (..., J, 2) px, joints3d (..., J, 3) m root-relative,
    K (..., 3, 3) -> T (..., 3) m.
    """
    joints2d, joints3d, K = (np.asarray(a, dtype=np.float64) for a in (joints2d, joints3d, K))
    if joints is not None:
        joints2d, joints3d = joints2d[..., joints, :], joints3d[..., joints, :]
    focal = np.stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :]  # (..., 1, 2)
    centre = K[..., :2, 2][..., None, :]  # (..., 1, 2)

    mean2d, mean3d = joints2d.mean(-2, keepdims=True), joints3d.mean(-2, keepdims=True)
    spread2d = np.sqrt(np.square((joints2d - mean2d) / focal).sum((-1, -2)))
    spread3d = np.sqrt(np.square(joints3d[..., :2] - mean3d[..., :2]).sum((-1, -2)))
    depth = spread3d / np.maximum(spread2d, 1e-9)  # of the centroid, (...,)
    centroid = np.concatenate(
        [(mean2d[..., 0, :] - centre[..., 0, :]) / focal[..., 0, :] * depth[..., None],
         depth[..., None]], -1
    )  # fmt: skip
    weak = centroid - mean3d[..., 0, :]

    offset = centre - joints2d  # (c - u), (..., J, 2)
    # Row for axis a (x or y): f_a * T_a + offset_a * T_z = -f_a * X_a - offset_a * Z.
    rows = np.zeros(joints2d.shape + (3,))
    rows[..., 0, 0] = focal[..., 0]
    rows[..., 1, 1] = focal[..., 1]
    rows[..., 2] = offset
    rhs = -focal * joints3d[..., :2] - offset * joints3d[..., 2:3]
    translation = weak
    for _ in range(reweightings + 1):
        weights = 1.0 / np.maximum(joints3d[..., 2] + translation[..., None, 2], 1e-3)
        weighted_rows = (rows * weights[..., None, None]).reshape(
            *rows.shape[:-3], 2 * joints2d.shape[-2], 3
        )
        weighted_rhs = (rhs * weights[..., None]).reshape(*rhs.shape[:-2], 2 * joints2d.shape[-2])
        normal = np.swapaxes(weighted_rows, -1, -2) @ weighted_rows
        translation = np.linalg.solve(
            normal, np.swapaxes(weighted_rows, -1, -2) @ weighted_rhs[..., None]
        )[..., 0]

    def reprojection_error(T):
        points = joints3d + T[..., None, :]
        in_front = (points[..., 2] > 1e-3).all(-1)
        pixels = points[..., :2] / np.maximum(points[..., 2:3], 1e-3) * focal + centre
        return np.where(in_front, np.square(pixels - joints2d).sum((-1, -2)), np.inf)

    better = reprojection_error(translation) <= reprojection_error(weak)
    return np.where(better[..., None], translation, weak)


# ----------------------------------------------------------------------------------------------
# Boxes (numpy, [x1, y1, x2, y2] pixels)


def points_to_box(points):
    """Tight box [x1, y1, x2, y2] around pixel points (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([points.min(0), points.max(0)])


def union_box(box_a, box_b):
    """Smallest box containing both boxes (the fused hand/object box)."""
    return np.concatenate([np.minimum(box_a[:2], box_b[:2]), np.maximum(box_a[2:], box_b[2:])])


def intersection_box(boxes_a, boxes_b):
    """Intersections of paired boxes (..., 4) and whether each is non-empty (...,).

    Works on numpy arrays and torch tensors; empty intersections come back with x2 <= x1 or
    y2 <= y1 and ``valid`` False.
    """
    lib = torch if torch.is_tensor(boxes_a) else np
    top_left = lib.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = lib.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    valid = (bottom_right > top_left).all(-1)
    return lib.concatenate([top_left, bottom_right], -1), valid


def box_units_to_pixels(normalised, boxes):
    """Points (N, ..., 2) normalised to boxes (N, 4) ((0, 0) top-left, (1, 1) bottom-right
    corner) -> pixels. Torch tensors."""
    shape = (-1,) + (1,) * (normalised.dim() - 2) + (2,)
    return boxes[:, :2].view(shape) + normalised * (boxes[:, 2:] - boxes[:, :2]).view(shape)


def pixels_to_box_units(pixels, boxes):
    """Inverse of :func:`box_units_to_pixels`."""
    shape = (-1,) + (1,) * (pixels.dim() - 2) + (2,)
    size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-6)
    return (pixels - boxes[:, :2].view(shape)) / size.view(shape)


def square_box(box, scale=1.0):
    """Square box with the centre of ``box`` and side ``scale`` x its longer side."""
    box = np.asarray(box, dtype=np.float64)
    centre = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]).max() * scale / 2
    return np.concatenate([centre - half, centre + half])


def crop_matrix(box, crop_size, scale=1.0):
    """Homogeneous affine (3, 3) taking original pixels to the pixels of a ``crop_size`` x
    ``crop_size`` square crop of ``square_box(box, scale)`` (scale + translation only, so
    ``crop_matrix @ K`` is the crop's pinhole intrinsics)."""
    x1, y1, x2, _ = square_box(box, scale)
    side = max(x2 - x1, 1e-6)
    s = crop_size / side
    return np.array([[s, 0.0, -s * x1], [0.0, s, -s * y1], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------
# Object control points


def box_control_points(corners):
    """The 21 control points of an object's 3D bounding box, from its 8 corners (8, 3) given in
    the object frame (axis-aligned there, any order; e.g. HO3D's ``objCorners3DRest``).

    Returns (21, 3): the 8 corners (x, y, z each from min to max, z fastest), the 12 edge
    midpoints (edges along x, then y, then z), then the centre. numpy, same unit as the input.
    """
    corners = np.asarray(corners, dtype=np.float64)
    lo, hi = corners.min(0), corners.max(0)
    bounds = np.stack([lo, hi])  # (2, 3)
    box_corners = np.array(
        [
            [bounds[i, 0], bounds[j, 1], bounds[k, 2]]
            for i, j, k in itertools.product((0, 1), repeat=3)
        ]
    )
    mid = (lo + hi) / 2
    edges = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for i, j in itertools.product((0, 1), repeat=2):
            point = mid.copy()
            point[others[0]] = bounds[i, others[0]]
            point[others[1]] = bounds[j, others[1]]
            edges.append(point)
    return np.concatenate([box_corners, np.array(edges), mid[None]], 0)


def transform_points(points, R, t):
    """Rigid transform ``R @ p + t`` of points (..., N, 3); R (..., 3, 3), t (..., 3)."""
    return points @ R.swapaxes(-1, -2) + t[..., None, :]
