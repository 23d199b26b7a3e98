"""HO3D loader on a tiny tree in the real format: records checked field by field against
values computed by hand (OpenGL -> OpenCV, MANO -> manopth joint order, projections, boxes),
registration, and the errors for missing or malformed files."""

import json
import logging
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from ho3d_fixture import (
    CAM,
    HAND_BETA,
    HAND_POSE,
    HEIGHT,
    OBJECT,
    WIDTH,
    joints_gl,
    train_meta,
    write_ho3d_tree,
)

from handobj_d2.data.datasets import builtin, load_ho3d, register_ho3d
from handobj_d2.data.segmentation import decode_segmentation, encode_ho3d


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_ho3d_tree(str(tmp_path_factory.mktemp("ho3d")))


def test_train_records_by_hand(tree, caplog):
    with caplog.at_level(logging.INFO):
        records = load_ho3d(tree, "train", "v2", dataset_name="fixture")
    assert len(records) == 2
    record = records[0]
    assert record["file_name"] == os.path.join(os.path.abspath(tree), "train/SeqA1/rgb/0000.png")
    assert record["image_id"] == "SeqA1/0000" and records[1]["frame_index"] == 1
    assert (record["height"], record["width"]) == (HEIGHT, WIDTH)
    assert record["sequence"] == "SeqA1"
    assert np.allclose(record["camera_K"], CAM)
    assert record["segmentation_file"].endswith("train/SeqA1/seg/0000.png")
    assert record["segmentation_format"] == "ho3d"
    assert "segmentation_file" not in records[1]
    assert "1 train frames without a segmentation file" in caplog.text

    hand, obj = record["annotations"]
    assert hand["category_id"] == 0 and obj["category_id"] == 1
    # manopth joint 1 (thumb MCP) is HO3D joint 13: GL (0.13, 0.065, -0.5) -> CV (0.13,
    # -0.065, 0.5) -> pixel (100 * 0.13 / 0.5 + 32, 100 * -0.065 / 0.5 + 24) = (58, 11).
    assert np.allclose(hand["joints3d"][1], [0.13, -0.065, 0.5])
    assert np.allclose(hand["joints2d"][1], [58, 11])
    # manopth joint 4 (thumb tip) is HO3D joint 16; joint 8 (index tip) is HO3D joint 17.
    assert np.allclose(hand["joints3d"][4], [0.16, -0.08, 0.5])
    assert np.allclose(hand["joints3d"][8], [0.17, -0.085, 0.5])
    assert np.allclose(hand["joints3d"][0], [0, 0, 0.5])
    # Joints span x 0..0.2 m and y 0..-0.1 m at 0.5 m: box [32, 4, 72, 24] px.
    assert np.allclose(hand["bbox"], [32, 4, 72, 24])
    # Global rotation: diag(1, -1, -1) @ Rz(90 deg).
    expected = np.diag([1.0, -1, -1]) @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    rotation = cv2.Rodrigues(hand["mano_pose"][:3].astype(np.float64))[0]
    assert np.allclose(rotation, expected, atol=1e-5)
    assert np.allclose(hand["mano_pose"][3:], HAND_POSE[3:])
    assert np.allclose(hand["mano_shape"], HAND_BETA)

    assert obj["object_name"] == OBJECT
    assert np.allclose(obj["object_R"], np.diag([1, -1, -1]))
    assert np.allclose(obj["object_t"], [0.05, -0.02, 0.4])
    # Control point 20 is the box centre (the object origin) -> t -> (44.5, 19) px.
    assert np.allclose(obj["control_points3d"][20], 0)
    assert np.allclose(obj["control_points2d"][20], [44.5, 19])
    # Corner 0 = (-0.02, -0.03, -0.01) -> camera (0.03, 0.01, 0.41).
    assert np.allclose(obj["control_points3d"][0], [-0.02, -0.03, -0.01])
    assert np.allclose(obj["control_points2d"][0], [32 + 100 * 0.03 / 0.41, 24 + 100 * 0.01 / 0.41])
    # Box of the projected 2 cm model cube around (0.05, -0.02, 0.4).
    box = [
        32 + 100 * 0.04 / 0.41,
        24 - 100 * 0.03 / 0.39,
        32 + 100 * 0.06 / 0.39,
        24 - 100 * 0.01 / 0.41,
    ]
    assert np.allclose(obj["bbox"], box, atol=1e-4)
    assert np.isclose(obj["object_diameter"], 0.02 * np.sqrt(3))


def test_evaluation_records_by_hand(tree):
    (record,) = load_ho3d(tree, "evaluation", "v2")
    hand, obj = record["annotations"]
    assert np.allclose(hand["root3d"], [0, 0, 0.5])
    assert np.allclose(hand["bbox"], [20, 5, 50, 30])
    for key in ("joints3d", "joints2d", "mano_pose", "mano_shape"):
        assert key not in hand
    assert "segmentation_file" not in record
    assert np.allclose(obj["object_t"], [0.05, -0.02, 0.4])


def test_v3_reads_jpg(tmp_path):
    root = write_ho3d_tree(str(tmp_path), version="v3", train_frames=1)
    (record,) = load_ho3d(root, "train", "v3")
    assert record["file_name"].endswith("SeqA1/rgb/0000.jpg")
    with pytest.raises(FileNotFoundError, match="0000.png"):
        load_ho3d(root, "train", "v2")


def test_registration_and_metadata(tree):
    register_ho3d("fixture_ho3d_train", tree, "train", "v2")
    try:
        records = DatasetCatalog.get("fixture_ho3d_train")
        assert [r["image_id"] for r in records] == ["SeqA1/0000", "SeqA1/0001"]
        metadata = MetadataCatalog.get("fixture_ho3d_train")
        assert metadata.evaluator_type == "handobj"
        assert metadata.unseen_objects == ("019_pitcher_base",)
        assert metadata.thing_classes == ["hand", "object"]
        model = metadata.object_models[OBJECT]
        assert model["points"].shape == (8, 3) and not model["symmetric"]
        assert list(metadata.object_models) == [OBJECT]
    finally:
        DatasetCatalog.remove("fixture_ho3d_train")
        MetadataCatalog.remove("fixture_ho3d_train")


def test_builtin_names_and_lazy_failure(tmp_path):
    for name in ("ho3d_v2_train", "ho3d_v3_evaluation", "synthetic_train", "synthetic_eval",
                 "synthetic_shifted_eval", "dexycb_s0_test", "fpha_train"):  # fmt: skip
        assert name in DatasetCatalog.list()
    builtin.register_all_builtin(str(tmp_path))  # already registered names are left alone
    name = "fixture_missing"
    register_ho3d(name, str(tmp_path / "nowhere"), "train", check=False)
    try:
        with pytest.raises(FileNotFoundError, match="nowhere"):
            DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_missing_layout_is_listed(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        register_ho3d("fixture_incomplete", str(tmp_path), "train")
    assert "train.txt" in str(error.value) and "models" in str(error.value)
    assert "fixture_incomplete" not in DatasetCatalog.list()


def test_malformed_files_are_named(tmp_path):
    root = write_ho3d_tree(str(tmp_path), train_frames=2)
    meta = os.path.join(root, "train/SeqA1/meta/0001.pkl")
    with open(meta, "wb") as f:
        f.write(b"\x80\x02 this is not a pickle")
    with pytest.raises(ValueError, match="0001.pkl"):
        load_ho3d(root, "train")
    with open(meta, "wb") as f:
        pickle.dump({"camMat": np.eye(3)}, f, protocol=2)
    with pytest.raises(ValueError, match="0001.pkl.*handJoints3D"):
        load_ho3d(root, "train")
    with open(meta, "wb") as f:
        pickle.dump({"camMat": np.eye(2), "handJoints3D": None}, f, protocol=2)
    with pytest.raises(ValueError, match="0001.pkl.*camMat"):
        load_ho3d(root, "train")
    with open(os.path.join(root, "train/SeqA1/rgb/0000.png"), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ValueError, match="0000.png"):
        load_ho3d(root, "train")
    with open(os.path.join(root, "train.txt"), "a") as f:
        f.write("no_slash_here\n")
    with pytest.raises(ValueError, match="train.txt:3"):
        load_ho3d(root, "train")


def test_train_meta_without_mano_field_is_an_error(tmp_path):
    root = write_ho3d_tree(str(tmp_path), train_frames=2)
    meta = train_meta()
    del meta["handBeta"]
    with open(os.path.join(root, "train/SeqA1/meta/0001.pkl"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    with pytest.raises(ValueError, match="0001.pkl: annotation field 'handBeta' is missing"):
        load_ho3d(root, "train")


def test_one_challenge_file_without_the_other_is_an_error(tmp_path):
    root = write_ho3d_tree(str(tmp_path))
    with open(os.path.join(root, "evaluation_xyz.json"), "w") as f:
        json.dump([joints_gl().tolist()], f)
    with pytest.raises(FileNotFoundError, match="evaluation_verts.json is missing"):
        load_ho3d(root, "evaluation")


@pytest.mark.parametrize("folder", ["train/SeqA1/segr", "segr/train/SeqA1/seg"])
def test_segr_masks_are_read(tmp_path, folder):
    root = write_ho3d_tree(str(tmp_path), train_frames=2)
    shutil.rmtree(os.path.join(root, "train/SeqA1/seg"))
    os.makedirs(os.path.join(root, folder))
    hand = np.zeros((HEIGHT, WIDTH), bool)
    hand[2:9, 3:7] = True
    image = encode_ho3d(hand, np.zeros_like(hand))
    cv2.imwrite(os.path.join(root, folder, "0001.png"), np.ascontiguousarray(image[..., ::-1]))
    first, second = load_ho3d(root, "train")
    assert "segmentation_file" not in first
    assert second["segmentation_file"] == os.path.join(os.path.abspath(root), folder, "0001.png")
    decoded_hand, decoded_object = decode_segmentation(
        second["segmentation_file"], second["segmentation_format"]
    )
    assert decoded_hand.sum() == 7 * 4 and decoded_hand[2:9, 3:7].all()
    assert not decoded_object.any()


def test_missing_images_are_listed_at_load_time(tmp_path):
    root = write_ho3d_tree(str(tmp_path), train_frames=9)
    for frame in range(1, 8):
        os.remove(os.path.join(root, f"train/SeqA1/rgb/{frame:04d}.png"))
    with pytest.raises(FileNotFoundError) as error:
        load_ho3d(root, "train", dataset_name="fixture")
    message = str(error.value)
    assert "fixture: 7 of 9 images of train.txt are missing" in message
    assert "train/SeqA1/rgb/0001.png" in message and "0005.png and 2 more" in message
    assert "0000.png" not in message and "0006.png" not in message
