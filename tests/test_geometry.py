"""Shared geometry helpers against closed forms and scipy."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handobj_d2 import geometry as g


def test_axis_angle_round_trip_matches_scipy_including_near_pi():
    rotvecs = Rotation.random(500, random_state=0).as_rotvec()
    rotvecs[0] = 0
    rotvecs[1] = [np.pi - 1e-6, 0, 0]
    rotvecs[2] = np.array([1.0, 1.0, 0.0]) / np.sqrt(2) * np.pi
    rotvecs[3] = [1e-7, 0, 0]
    matrices = g.axis_angle_to_matrix(torch.from_numpy(rotvecs))
    np.testing.assert_allclose(
        matrices.numpy(), Rotation.from_rotvec(rotvecs).as_matrix(), atol=1e-12
    )
    back = g.matrix_to_axis_angle(matrices)
    np.testing.assert_allclose(g.axis_angle_to_matrix(back).numpy(), matrices.numpy(), atol=1e-9)
    assert back.norm(dim=-1).max() <= np.pi + 1e-9


def test_rot6d_keeps_the_first_two_columns_and_orthonormalises():
    matrices = torch.from_numpy(Rotation.random(50, random_state=1).as_matrix())
    rot6d = torch.cat([matrices[..., :, 0], matrices[..., :, 1]], -1)  # the first two columns
    np.testing.assert_allclose(g.rot6d_to_matrix(rot6d).numpy(), matrices.numpy(), atol=1e-12)
    # A scaled, skewed second vector still gives the rotation of Gram-Schmidt.
    raw = torch.tensor([[2.0, 0.0, 0.0, 1.0, 3.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(g.rot6d_to_matrix(raw)[0].numpy(), np.eye(3), atol=1e-12)
    robust = g.rot6d_to_matrix_robust(rot6d)
    np.testing.assert_allclose(robust.numpy(), matrices.numpy(), atol=1e-12)


def test_project_to_rotation_removes_noise_and_reflections():
    matrices = torch.from_numpy(Rotation.random(20, random_state=2).as_matrix())
    projected = g.project_to_rotation(matrices * 1.3)
    np.testing.assert_allclose(projected.numpy(), matrices.numpy(), atol=1e-12)
    reflected = g.project_to_rotation(-matrices)
    np.testing.assert_allclose(torch.linalg.det(reflected).numpy(), 1.0, atol=1e-12)


def test_joint_orders():
    np.testing.assert_array_equal(g.HO3D_TO_MANOPTH[g.MANOPTH_TO_HO3D], np.arange(21))
    ho3d_names = (["wrist"] + [f"{f}_{k}" for f in ("index", "middle", "pinky", "ring", "thumb") for k in ("mcp", "pip", "dip")]
                  + [f"{f}_tip" for f in ("thumb", "index", "middle", "ring", "pinky")])  # fmt: skip
    assert [ho3d_names[i] for i in g.HO3D_TO_MANOPTH] == list(g.JOINT_NAMES)
    # Every joint's parent is the previous joint of its finger, or the wrist.
    for joint, parent in enumerate(g.JOINT_PARENTS[1:], start=1):
        name, parent_name = g.JOINT_NAMES[joint], g.JOINT_NAMES[parent]
        assert (
            parent_name == "wrist"
            if name.endswith("mcp")
            else parent_name.split("_")[0] == name.split("_")[0]
        )


def test_opengl_opencv_flip_and_projection():
    point = np.array([[0.1, 0.2, -0.5]])
    np.testing.assert_allclose(g.opengl_to_opencv(point), [[0.1, -0.2, 0.5]])
    np.testing.assert_allclose(g.opengl_to_opencv(g.opengl_to_opencv(point)), point)
    np.testing.assert_allclose(g.opencv_to_opengl([[0.1, -0.2, 0.5]]), point)
    np.testing.assert_allclose(g.opengl_to_opencv(torch.tensor(point)).numpy(), [[0.1, -0.2, 0.5]])
    K = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    # u = 500 * 0.1 / 0.5 + 320 = 420, v = 400 * -0.2 / 0.5 + 240 = 80
    np.testing.assert_allclose(g.project_points(g.opengl_to_opencv(point), K), [[420.0, 80.0]])
    np.testing.assert_allclose(
        g.project_points(
            torch.tensor([[0.1, -0.2, 0.5]], dtype=torch.float64), torch.tensor(K)
        ).numpy(),
        [[420.0, 80.0]],
    )


def test_box_control_points():
    corners = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-2.0, 2.0) for z in (-3.0, 3.0)])
    points = g.box_control_points(corners[::-1])  # any corner order
    assert points.shape == (21, 3)
    assert {tuple(p) for p in points[:8]} == {tuple(c) for c in corners}
    np.testing.assert_allclose(points[20], [0, 0, 0])
    # Edge midpoints: exactly one coordinate is 0 (the edge's axis), the others at the bounds.
    zeros = (points[8:20] == 0).sum(1)
    np.testing.assert_array_equal(zeros, np.ones(12))
    np.testing.assert_array_equal(np.abs(points[8:20]).max(0), [1, 2, 3])
    assert len({tuple(p) for p in points}) == 21


@pytest.mark.parametrize("lib", [np, torch])
def test_intersection_box(lib):
    a = (
        lib.asarray([[0.0, 0, 10, 10], [0, 0, 10, 10]])
        if lib is np
        else torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    )
    b = (
        lib.asarray([[5.0, 2, 20, 8], [11, 0, 20, 8]])
        if lib is np
        else torch.tensor([[5.0, 2, 20, 8], [11, 0, 20, 8]])
    )
    boxes, valid = g.intersection_box(a, b)
    np.testing.assert_allclose(np.asarray(boxes[0]), [5, 2, 10, 8])
    assert bool(valid[0]) and not bool(valid[1])


def test_square_and_union_boxes():
    np.testing.assert_allclose(g.square_box([0, 0, 4, 2], scale=1.5), [-1, -2, 5, 4])
    np.testing.assert_allclose(
        g.union_box(np.array([0, 0, 2, 2]), np.array([1, -1, 3, 1])), [0, -1, 3, 2]
    )
    np.testing.assert_allclose(g.points_to_box([[1, 5], [3, 2], [2, 4]]), [1, 2, 3, 5])


def test_root_translation_is_recovered_from_exact_projections():
    rng = np.random.default_rng(3)
    joints = rng.normal(0, 0.04, (4, 21, 3))
    joints -= joints[:, :1]
    translation = np.array(
        [[0.05, -0.02, 0.5], [-0.1, 0.1, 0.7], [0.0, 0.0, 0.4], [0.2, 0.05, 0.9]]
    )
    K = np.array([[600.0, 0, 320], [0, 580.0, 240], [0, 0, 1]])
    joints2d = g.project_points(joints + translation[:, None], K)
    np.testing.assert_allclose(
        g.estimate_root_translation(joints2d, joints, K), translation, atol=1e-9
    )
    np.testing.assert_allclose(
        g.estimate_root_translation(joints2d[0], joints[0], K), translation[0], atol=1e-9
    )


def test_camera_roll_turns_the_image_as_opencv_rotates_it():
    import cv2

    np.testing.assert_allclose(g.roll_matrix(np.pi / 2) @ [1.0, 0, 0], [0, 1, 0], atol=1e-12)
    # A camera rolled by -a sees its image turned by a degrees (counter-clockwise as displayed)
    # about the principal point: K Rz K^-1 is OpenCV's rotation matrix for square pixels.
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    pixels = K @ g.roll_matrix(-np.radians(30.0)) @ np.linalg.inv(K)
    np.testing.assert_allclose(pixels[:2], cv2.getRotationMatrix2D((320, 240), 30.0, 1.0))


def test_palm_joints_place_a_hand_whose_fingers_are_wrongly_bent():
    """2D joints of the true hand, 3D joints with every finger curled to half its length (a
    weak model's hand): the palm's joints (the wrist and the first joint of each finger) still
    give the true wrist position, while a fit to all 21 joints puts the smaller-looking hand
    too near the camera, so it would be drawn too large."""
    rng = np.random.default_rng(5)
    joints = rng.normal(0, 0.04, (21, 3))
    joints -= joints[0]
    translation = np.array([0.03, -0.02, 0.6])
    K = np.array([[500.0, 0, 128], [0, 500.0, 96], [0, 0, 1]])
    joints2d = g.project_points(joints + translation, K)
    curled = joints.copy()
    for base in (1, 5, 9, 13, 17):  # each finger's joints pulled halfway to its first joint
        curled[base + 1 : base + 4] = (curled[base + 1 : base + 4] + curled[base]) / 2
    np.testing.assert_allclose(
        g.estimate_root_translation(joints2d, curled, K, joints=g.PALM_JOINTS),
        translation,
        atol=1e-9,
    )
    assert g.estimate_root_translation(joints2d, curled, K)[2] < translation[2] - 0.05


def test_root_of_noisy_joints_is_near_the_truth_and_of_a_mirrored_hand_in_front():
    """2D joints with 2 px of noise: the wrist within a centimetre of the truth. 3D joints of
    the mirror-image hand (a weak model's wrong orientation, which no translation explains):
    the answer still puts every joint in front of the camera, at about the depth where the
    hand's size matches its 2D size (the true 0.5 m). The plain linear least squares that the
    predictor used before put such hands at -0.07 to 0.24 m (seeds 6-11): behind the camera, or
    so near that the demo drew the mesh several times the hand's size."""
    rng = np.random.default_rng(6)
    joints = rng.normal(0, 0.04, (21, 3))
    joints -= joints[0]
    translation = np.array([0.02, 0.01, 0.5])
    K = np.array([[500.0, 0, 128], [0, 500.0, 96], [0, 0, 1]])
    joints2d = g.project_points(joints + translation, K)
    noisy = joints2d + rng.normal(0, 2, joints2d.shape)
    assert np.linalg.norm(g.estimate_root_translation(noisy, joints, K) - translation) < 0.01

    mirrored = joints * np.array([-1.0, 1.0, 1.0])
    root = g.estimate_root_translation(joints2d, mirrored, K)
    assert ((mirrored + root)[:, 2] > 0).all()
    assert 0.3 < root[2] < 0.8
