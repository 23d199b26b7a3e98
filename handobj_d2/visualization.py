"""Drawing predictions on images: hand box, 2D skeleton, the hand mesh (semi-transparent, from
the rasteriser in rendering.py) and the object's projected 3D bounding box.

Images are (H, W, 3) uint8 **BGR** (OpenCV's order) in and out; 2D points in pixels; 3D in
metres in the OpenCV camera frame of ``camera_K``.
"""

import itertools

import cv2
import numpy as np

from .geometry import JOINT_PARENTS, project_points, transform_points
from .rendering import Lighting, Mesh, overlay, render_meshes

# BGR colour of each finger's bones (thumb, index, middle, ring, pinky); the wrist is white.
FINGER_COLORS = ((0, 0, 230), (0, 160, 255), (0, 210, 0), (230, 120, 0), (200, 0, 200))
HAND_BOX_COLOR = (0, 200, 255)
OBJECT_BOX_COLOR = (255, 160, 0)
OBJECT_3D_BOX_COLOR = (60, 255, 60)
HAND_MESH_RGB = np.array([0.55, 0.7, 1.0])  # light blue albedo (stands out on skin), RGB in [0, 1]
# Edges of the 3D box: control points 0-7 are its corners indexed 4i + 2j + k over (x, y, z)
# bounds (geometry.box_control_points), so an edge joins corners differing in one bit.
BOX_EDGES = tuple(
    (a, b) for a, b in itertools.combinations(range(8), 2) if bin(a ^ b).count("1") == 1
)


def _point(p):
    return int(round(float(p[0]))), int(round(float(p[1])))


def _thickness(image):
    return max(1, round(max(image.shape[:2]) / 320))


def joint_color(joint):
    """BGR colour of joint ``joint`` (manopth order) and of the bone to its parent."""
    return (255, 255, 255) if joint == 0 else FINGER_COLORS[(joint - 1) // 4]


def draw_box(image, box, color, label=None):
    """Rectangle [x1, y1, x2, y2] px (in place) with an optional text label above it."""
    thickness = _thickness(image)
    cv2.rectangle(image, _point(box[:2]), _point(box[2:]), color, thickness, cv2.LINE_AA)
    if label:
        x, y = _point(box[:2])
        cv2.putText(image, label, (x, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * thickness, color, thickness, cv2.LINE_AA)  # fmt: skip


def draw_skeleton(image, joints2d):
    """21 joints (21, 2) px in manopth order: bones coloured per finger (in place)."""
    thickness = _thickness(image)
    for joint, parent in enumerate(JOINT_PARENTS):
        if parent >= 0:
            cv2.line(image, _point(joints2d[parent]), _point(joints2d[joint]),
                     joint_color(joint), thickness + 1, cv2.LINE_AA)  # fmt: skip
    for joint, point in enumerate(joints2d):
        cv2.circle(image, _point(point), thickness + 1, joint_color(joint), -1, cv2.LINE_AA)


def draw_object_box_3d(image, control_points3d, object_R, object_t, camera_K):
    """The object's 3D bounding box (its first 8 control points (21, 3) m, object frame) posed
    by object_R (3, 3), object_t (3,) and projected through camera_K (in place)."""
    corners = transform_points(np.asarray(control_points3d[:8], dtype=np.float64),
                               np.asarray(object_R), np.asarray(object_t))  # fmt: skip
    if (corners[:, 2] <= 0).any():
        return
    pixels = project_points(corners, np.asarray(camera_K, dtype=np.float64))
    for a, b in BOX_EDGES:
        cv2.line(image, _point(pixels[a]), _point(pixels[b]), OBJECT_3D_BOX_COLOR,
                 _thickness(image), cv2.LINE_AA)  # fmt: skip


def overlay_hand_mesh(image, vertices, faces, camera_K, alpha=0.5):
    """Blend the shaded hand mesh (vertices (778, 3) m, camera frame) over the image."""
    height, width = image.shape[:2]
    rendering = render_meshes(
        camera_K,
        (width, height),
        [Mesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), colors=HAND_MESH_RGB)],
        lighting=Lighting(ambient=0.45, diffuse=0.55),
    )
    rendering = rendering._replace(image=np.ascontiguousarray(rendering.image[..., ::-1]))
    return overlay(image, rendering, alpha)


def draw_hand_object(image, pairs, camera_K, hand_faces, control_points3d=None,
                     mesh_alpha=0.5):  # fmt: skip
    """Draw every pair of a model output's ``instances`` (moved to the CPU) on a copy of
    ``image``: mesh (needs ``pred_root3d``, see HandObjectPredictor), skeleton, hand box and,
    for pairs with an object (``pred_has_object``), the object box, its voted 2D control points
    (dots) and, where its pose is valid and ``control_points3d`` (21, 3) m is known, its
    projected 3D box."""
    out = np.ascontiguousarray(image).copy()
    fields = pairs.get_fields()
    for row in range(len(pairs)):
        if "pred_root3d" in fields:
            vertices = fields["pred_vertices"][row].numpy() + fields["pred_root3d"][row].numpy()
            if (vertices[:, 2] > 0).all():
                out = overlay_hand_mesh(out, vertices, hand_faces, camera_K, mesh_alpha)
        has_object = bool(fields["pred_has_object"][row])
        if has_object:
            draw_box(out, fields["pred_object_boxes"].tensor[row].numpy(), OBJECT_BOX_COLOR,
                     f"object {float(fields['object_scores'][row]):.2f}")  # fmt: skip
        draw_box(out, fields["pred_boxes"].tensor[row].numpy(), HAND_BOX_COLOR,
                 f"hand {float(fields['scores'][row]):.2f}")  # fmt: skip
        draw_skeleton(out, fields["pred_joints2d"][row].numpy())
        if not has_object:
            continue
        if control_points3d is not None and bool(fields["pred_object_pose_valid"][row]):
            draw_object_box_3d(out, control_points3d, fields["pred_object_R"][row].numpy(),
                               fields["pred_object_t"][row].numpy(), camera_K)  # fmt: skip
        for point in fields["pred_control_points2d"][row].numpy():
            cv2.circle(out, _point(point), _thickness(out), OBJECT_3D_BOX_COLOR, -1)
    return out
