"""FPHA loader on a tiny tree in the released format (split file, skeleton.txt in mm in the
world frame, column-major object_pose.txt, PLY models in metres): world -> colour camera with
the published extrinsics, FPHA -> manopth joint order, the hand-object subset of the split,
and errors naming the files."""

import contextlib
import logging
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from handobj_d2.data.datasets import load_fpha, register_fpha

# Published FPHA calibration (facts): colour intrinsics and world -> colour camera (mm).
FX, FY, CX, CY = 1395.749023, 1395.749268, 935.732544, 540.681030
EXTRINSICS = np.array(
    [
        [0.999988496304, -0.00468848412856, 0.000982563360594, 25.7],
        [0.00469115935266, 0.999985218048, -0.00273845880292, 1.22],
        [-0.000969709653873, 0.00274303671904, 0.99999576807, 3.902],
    ]
)
CUBE = 0.03 * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T


def skeleton_world(frame):
    """FPHA-order joint k at (10 k + frame, 5 k, 500) mm in the world frame."""
    k = np.arange(21)
    return np.stack([10.0 * k + frame, 5.0 * k, np.full(21, 500.0)], 1)


def to_camera_m(point_mm):
    return (EXTRINSICS[:, :3] @ point_mm + EXTRINSICS[:, 3]) / 1000


def write_ply(path):
    os.makedirs(os.path.dirname(path))
    header = "ply\nformat ascii 1.0\nelement vertex 8\nproperty float x\nproperty float y\n"
    header += "property float z\nend_header\n"
    with open(path, "w") as f:
        f.write(header + "".join(f"{x} {y} {z}\n" for x, y, z in CUBE))


def write_sequence(root, key, frames, posed_frames):
    image_dir = os.path.join(root, "Video_files", *key, "color")
    os.makedirs(image_dir)
    for frame in frames:
        cv2.imwrite(
            os.path.join(image_dir, f"color_{frame:04d}.jpeg"), np.zeros((27, 48, 3), np.uint8)
        )
    skeleton = os.path.join(root, "Hand_pose_annotation_v1", *key, "skeleton.txt")
    os.makedirs(os.path.dirname(skeleton))
    with open(skeleton, "w") as f:
        for frame in frames:
            f.write(
                " ".join([str(frame)] + [f"{v:.4f}" for v in skeleton_world(frame).ravel()]) + "\n"
            )
    pose = os.path.join(root, "Object_6D_pose_annotation_v1", *key, "object_pose.txt")
    os.makedirs(os.path.dirname(pose))
    transform = np.eye(4)
    transform[:3, 3] = [0.0, 0.0, 600.0]  # object origin 60 cm in front, mm
    with open(pose, "w") as f:
        for frame in posed_frames:  # 16 numbers, column-major
            f.write(" ".join([str(frame)] + [f"{v:g}" for v in transform.T.ravel()]) + "\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fpha"))
    with open(os.path.join(root, "data_split_action_recognition.txt"), "w") as f:
        f.write("Training 2\nSubject_1/open_juice_bottle/1 0\nSubject_1/charge_cell_phone/1 5\n")
        f.write("Test 1\nSubject_2/pour_milk/2 3\n")
    write_sequence(root, ("Subject_1", "open_juice_bottle", "1"), [0, 1, 2], posed_frames=[0, 1])
    write_sequence(root, ("Subject_2", "pour_milk", "2"), [0], posed_frames=[0])
    for name in ("juice_bottle", "milk"):
        write_ply(os.path.join(root, "Object_models", f"{name}_model", f"{name}_model.ply"))
    return root


def test_train_records_by_hand(tree, caplog):
    with caplog.at_level(logging.INFO):
        records = load_fpha(tree, "train", dataset_name="fixture")
    assert len(records) == 2
    assert "1 frames without an object pose" in caplog.text
    assert "1 sequences without an object pose" in caplog.text
    record = records[1]
    assert record["image_id"] == "Subject_1/open_juice_bottle/1/0001"
    assert record["file_name"].endswith(
        "Video_files/Subject_1/open_juice_bottle/1/color/color_0001.jpeg"
    )
    assert (record["height"], record["width"]) == (27, 48)
    assert record["sequence"] == "Subject_1/open_juice_bottle/1" and record["frame_index"] == 1
    assert np.allclose(record["camera_K"], [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    hand, obj = record["annotations"]
    world = skeleton_world(1)
    # manopth order: wrist, thumb MCP (FPHA 1), thumb PIP (FPHA 6), ..., index MCP (FPHA 2).
    assert np.allclose(hand["joints3d"][0], to_camera_m(world[0]))
    assert np.allclose(hand["joints3d"][2], to_camera_m(world[6]))
    assert np.allclose(hand["joints3d"][5], to_camera_m(world[2]))
    assert np.allclose(hand["joints3d"][20], to_camera_m(world[20]))
    x, y, z = to_camera_m(world[6])
    assert np.allclose(hand["joints2d"][2], [FX * x / z + CX, FY * y / z + CY], atol=1e-3)
    assert "mano_pose" not in hand
    assert obj["object_name"] == "juice_bottle"
    assert np.allclose(obj["object_R"], EXTRINSICS[:, :3], atol=1e-6)
    t = to_camera_m(np.array([0.0, 0.0, 600.0]))
    assert np.allclose(obj["object_t"], t, atol=1e-6)
    assert np.allclose(
        obj["control_points2d"][20], [FX * t[0] / t[2] + CX, FY * t[1] / t[2] + CY], atol=1e-3
    )
    assert np.isclose(obj["object_diameter"], 0.06 * np.sqrt(3))


def test_test_split_and_registration(tree):
    register_fpha("fixture_fpha_test", tree, "test")
    try:
        (record,) = DatasetCatalog.get("fixture_fpha_test")
        assert record["annotations"][1]["object_name"] == "milk"
        assert MetadataCatalog.get("fixture_fpha_test").object_models["milk"]["points"].shape == (
            8,
            3,
        )
    finally:
        DatasetCatalog.remove("fixture_fpha_test")
        MetadataCatalog.remove("fixture_fpha_test")


def test_missing_files_are_listed(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="Video_files"):
        register_fpha("fixture_fpha_incomplete", str(tmp_path), "train")
    os.rename(os.path.join(tree, "Object_models", "milk_model"), os.path.join(tree, "milk_away"))
    try:
        with pytest.raises(FileNotFoundError, match="milk_model.ply"):
            load_fpha(tree, "test")
    finally:
        os.rename(
            os.path.join(tree, "milk_away"), os.path.join(tree, "Object_models", "milk_model")
        )


@contextlib.contextmanager
def _replaced(path, content):
    """``path`` holds ``content`` inside the block, its own content again after it."""
    with open(path) as f:
        good = f.read()
    try:
        with open(path, "w") as f:
            f.write(content)
        yield
    finally:
        with open(path, "w") as f:
            f.write(good)


def test_malformed_table_is_named(tree):
    path = os.path.join(
        tree, "Object_6D_pose_annotation_v1", "Subject_2", "pour_milk", "2", "object_pose.txt"
    )
    with _replaced(path, "0 1 0 0\n"), pytest.raises(ValueError, match="object_pose.txt"):
        load_fpha(tree, "test")


def test_empty_skeleton_is_an_error_naming_it(tree):
    path = os.path.join(
        tree, "Hand_pose_annotation_v1", "Subject_2", "pour_milk", "2", "skeleton.txt"
    )
    with _replaced(path, ""), pytest.raises(ValueError) as error:
        load_fpha(tree, "test")
    assert str(error.value) == f"{path}: the annotation file is empty (expected one row per frame)"


def test_missing_image_after_the_first_is_listed(tree):
    image = os.path.join(
        tree, "Video_files", "Subject_1", "open_juice_bottle", "1", "color", "color_0001.jpeg"
    )
    os.rename(image, image + ".away")
    try:
        with pytest.raises(FileNotFoundError) as error:
            load_fpha(tree, "train", dataset_name="fixture")
    finally:
        os.rename(image + ".away", image)
    assert str(error.value) == f"fixture: 1 of 2 colour images are missing: {image}"
