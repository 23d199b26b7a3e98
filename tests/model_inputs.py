"""Model inputs in the mapper's output format (docs/design.md "Mapper output") built from a
known hand and object pose, for the model tests."""

import cv2
import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from handobj_d2.data.dataset_mapper import hand_object_instances
from handobj_d2.geometry import axis_angle_to_matrix, box_control_points, project_points

FIXTURE_MANO = "/work/shared/fixtures/mano_format_random_chumpy.pkl"


def random_rotation(rng):
    axis = rng.normal(size=3)
    angle = rng.uniform(0.2, 2.5)
    return cv2.Rodrigues(axis / np.linalg.norm(axis) * angle)[0]


def object_control_points(half_extents=(0.04, 0.03, 0.05)):
    corners = (
        np.array(half_extents) * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    )
    return box_control_points(corners)


def make_sample(hand_layer, rng, height, width, image_id="sample"):
    """One training/evaluation sample of an (height, width) model input with a MANO hand
    and a box-shaped object, both in front of a camera whose image is the model input."""
    K = np.array([[1.6 * width, 0, width / 2], [0, 1.6 * width, height / 2], [0, 0, 1.0]])
    mano_pose = np.concatenate([rng.normal(0, 1.0, 3), rng.normal(0, 0.2, 45)])
    mano_shape = rng.normal(0, 0.5, 10)
    with torch.no_grad():
        pose = torch.tensor(mano_pose, dtype=torch.float32)[None]
        _, joints = hand_layer(pose, torch.tensor(mano_shape, dtype=torch.float32)[None])
    wrist = np.array([rng.uniform(-0.03, 0.0), rng.uniform(-0.02, 0.02), 0.45])
    joints3d = joints[0].numpy().astype(np.float64) + wrist
    joints2d = project_points(joints3d, K)
    R = random_rotation(rng)
    t = wrist + np.array([0.06, rng.uniform(-0.02, 0.02), 0.02])
    points3d = object_control_points()
    points2d = project_points(points3d @ R.T + t, K)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points2d[:8].astype(np.float32)).astype(np.int32), 1)

    def box(points):
        lo, hi = points.min(0) - 2, points.max(0) + 2
        return np.clip(np.concatenate([lo, hi]), 0, [width, height, width, height])

    hand_box, object_box = box(joints2d), box(points2d)
    image = rng.integers(0, 256, (3, height, width), dtype=np.uint8)
    instances = Instances(
        (height, width),
        gt_boxes=Boxes(torch.tensor(np.stack([hand_box, object_box]), dtype=torch.float32)),
        gt_classes=torch.tensor([0, 1]),
    )
    hand = {
        "box": hand_box,
        "joints2d": joints2d,
        "joints3d": joints3d,
        "has_joints3d": True,
        "mano_pose": mano_pose,
        "mano_shape": mano_shape,
        "has_mano": True,
    }
    obj = {
        "box": object_box,
        "control_points2d": points2d,
        "control_points3d": points3d,
        "object_R": R,
        "object_t": t,
        "has_pose": True,
    }
    return {
        "image": torch.from_numpy(image),
        "height": height,
        "width": width,
        "image_id": image_id,
        "camera_K": K.astype(np.float32),
        "image_to_input": np.eye(3, dtype=np.float32),
        "instances": instances,
        "hand_object": hand_object_instances(
            (height, width), hand, obj, mask, name=f"record {image_id!r}"
        ),
        "is_pseudo_label": False,
    }


def hand_rotations(mano_pose):
    """(48,) axis-angle -> (16, 3, 3) rotation matrices (numpy)."""
    return axis_angle_to_matrix(torch.tensor(mano_pose, dtype=torch.float64).view(16, 3)).numpy()
