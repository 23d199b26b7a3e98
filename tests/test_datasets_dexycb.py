"""DexYCB loader on a tiny tree in the released format (meta.yml, calibration YAML files,
labels_%06d.npz, YCB OBJ models): the s0 split rule, the kept frames (right hand, hand
present, grasped object posed and in the grasp), records checked by hand, MANO PCA -> full
axis-angle, and errors naming the files."""

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog

from handobj_d2.data.datasets import load_dexycb, register_dexycb
from handobj_d2.data.datasets.dexycb import (
    DEXYCB_SERIALS,
    DEXYCB_SUBJECTS,
    dexycb_layout,
    dexycb_object_models,
)
from handobj_d2.engine import setup_cfg
from handobj_d2.engine.trainer import HandObjectTrainer
from handobj_d2.mano import load_mano_model

RANDOM_MANO = str(Path(__file__).parent / "fixtures" / "mano" / "mano_format_random_chumpy.pkl")
SUBJECT = DEXYCB_SUBJECTS[0]
SEQUENCES = [f"20200709_14{i:04d}" for i in range(5)]  # sorted: positions 0..4
BETAS = [round(0.1 * i, 1) for i in range(10)]
CUBE = 0.02 * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T


def intrinsics(serial_index):
    return {"fx": 600.0 + serial_index, "fy": 610.0, "ppx": 320.0, "ppy": 240.0}


def hand_joints(x0):
    j = np.arange(21)
    return np.stack([x0 + 0.001 * j, 0.002 * j, np.full(21, 0.5)], 1)


def write_labels(path, joints3d, object_pose, pca=None):
    """labels npz of a frame: two objects (the grasped one second), one hand."""
    pose_y = np.zeros((2, 3, 4), np.float32)
    pose_y[0] = np.hstack([np.eye(3), [[0.3], [0.0], [0.8]]])
    if object_pose is not None:
        pose_y[1] = object_pose
    pose_m = np.zeros((1, 51), np.float32)
    pose_m[0, :3] = [0.1, -0.2, 0.3]
    if pca is not None:
        pose_m[0, 3:48] = pca
    joint_2d = 100 + np.arange(21)[:, None] * np.array([2.0, 1.0])
    if joints3d is None:
        joints3d, joint_2d = -np.ones((21, 3)), -np.ones((21, 2))
    np.savez(
        path,
        seg=np.zeros((4, 4), np.uint8),
        pose_y=pose_y,
        pose_m=pose_m,
        joint_3d=np.asarray(joints3d, np.float32)[None],
        joint_2d=np.asarray(joint_2d, np.float32)[None],
    )


def write_sequence(root, name, side, frames, subject=SUBJECT):
    """frames: list of (joints3d or None, object pose (3, 4) or None); each frame gets its
    labels and a (blank) colour image file on every camera."""
    folder = os.path.join(root, subject, name)
    os.makedirs(folder)
    meta = {
        "serials": list(DEXYCB_SERIALS),
        "num_frames": len(frames),
        "ycb_ids": [2, 5],  # 003_cracker_box, 006_mustard_bottle (grasped)
        "ycb_grasp_ind": 1,
        "mano_sides": [side],
        "mano_calib": ["20200709-subject-01"],
    }
    with open(os.path.join(folder, "meta.yml"), "w") as f:
        yaml.safe_dump(meta, f)
    pca = np.zeros(45)
    pca[0] = 1.0
    for serial in DEXYCB_SERIALS:
        os.makedirs(os.path.join(folder, serial))
        for index, (joints, pose) in enumerate(frames):
            write_labels(os.path.join(folder, serial, f"labels_{index:06d}.npz"), joints, pose, pca)
            Path(folder, serial, f"color_{index:06d}.jpg").touch()


def fill_subjects(root):
    """Empty sequences (no frames) so that every subject has the 100 the toolkit asserts; their
    names sort after the fixture's."""
    for subject in DEXYCB_SUBJECTS:
        for i in range(len(os.listdir(os.path.join(root, subject))), 100):
            write_sequence(root, f"20200709_15{i:04d}", "right", [], subject)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dexycb"))
    for subject in DEXYCB_SUBJECTS:
        os.makedirs(os.path.join(root, subject))
    calib = os.path.join(root, "calibration")
    os.makedirs(os.path.join(calib, "intrinsics"))
    for i, serial in enumerate(DEXYCB_SERIALS):
        with open(os.path.join(calib, "intrinsics", f"{serial}_640x480.yml"), "w") as f:
            yaml.safe_dump({"color": intrinsics(i), "depth": intrinsics(i)}, f)
    os.makedirs(os.path.join(calib, "mano_20200709-subject-01"))
    with open(os.path.join(calib, "mano_20200709-subject-01", "mano.yml"), "w") as f:
        yaml.safe_dump({"betas": BETAS}, f)
    for name in ("003_cracker_box", "006_mustard_bottle"):
        os.makedirs(os.path.join(root, "models", name))
        with open(os.path.join(root, "models", name, "textured_simple.obj"), "w") as f:
            f.write("# cube\nmtllib textured_simple.obj.mtl\n")
            f.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in CUBE)
            f.write("vt 0 0\nf 1/1 2/1 3/1\n")
    pose = np.hstack([np.eye(3), [[0.0], [0.0], [0.5]]])
    write_sequence(root, SEQUENCES[0], "right", [
        (hand_joints(0.025), pose),  # kept: the closest joint is 5 mm from the object's box
        (None, pose),  # no hand
        (hand_joints(0.3), pose),  # hand 28 cm away: object not in the grasp
    ])  # fmt: skip
    write_sequence(root, SEQUENCES[1], "left", [(hand_joints(0.025), pose)])
    write_sequence(root, SEQUENCES[2], "right", [(hand_joints(0.025), None)])  # object not posed
    write_sequence(root, SEQUENCES[3], "right", [(None, pose)])
    write_sequence(root, SEQUENCES[4], "right", [(hand_joints(0.02), pose)])  # val/test position
    fill_subjects(root)
    return root


def test_train_records_by_hand(tree, caplog):
    with caplog.at_level(logging.INFO):
        records = load_dexycb(
            tree, "train", mano_path=RANDOM_MANO, protocol="grasp", dataset_name="fixture"
        )
    # Sequence positions 0-3 are train; only position 0's first frame is kept, on 8 cameras.
    assert len(records) == 8
    assert "8 frames of left-hand sequences" in caplog.text
    assert "16 frames without a hand" in caplog.text
    assert "8 frames with the object out of the grasp" in caplog.text
    assert "8 frames without a pose of the grasped object" in caplog.text
    record = records[1]
    serial = DEXYCB_SERIALS[1]
    assert record["image_id"] == f"{SUBJECT}/{SEQUENCES[0]}/{serial}/000000"
    assert record["file_name"] == os.path.join(
        os.path.abspath(tree), SUBJECT, SEQUENCES[0], serial, "color_000000.jpg"
    )
    assert record["sequence"] == f"{SUBJECT}/{SEQUENCES[0]}/{serial}" and record["frame_index"] == 0
    assert (record["height"], record["width"]) == (480, 640)
    assert np.allclose(record["camera_K"], [[601, 0, 320], [0, 610, 240], [0, 0, 1]])
    hand, obj = record["annotations"]
    assert np.allclose(hand["joints3d"], hand_joints(0.025))
    assert np.allclose(hand["joints2d"][20], [140, 120])  # from joint_2d, not re-projected
    assert np.allclose(hand["bbox"], [100, 100, 140, 120])
    model = load_mano_model(RANDOM_MANO)
    assert np.allclose(hand["mano_pose"][:3], [0.1, -0.2, 0.3])
    expected = np.asarray(model["hands_components"])[0] + np.asarray(model["hands_mean"])
    assert np.allclose(hand["mano_pose"][3:], expected, atol=1e-6)
    assert np.allclose(hand["mano_shape"], BETAS)
    assert obj["object_name"] == "006_mustard_bottle"
    assert np.allclose(obj["object_R"], np.eye(3)) and np.allclose(obj["object_t"], [0, 0, 0.5])
    # Model: a 4 cm cube at 0.5 m; its near face (z = 0.48) bounds the projection.
    half = 0.02 / 0.48
    assert np.allclose(
        obj["bbox"], [320 - 601 * half, 240 - 610 * half, 320 + 601 * half, 240 + 610 * half]
    )
    assert np.allclose(obj["control_points2d"][20], [320, 240])
    assert np.allclose(obj["control_points3d"][0], [-0.02, -0.02, -0.02])
    assert np.isclose(obj["object_diameter"], 0.04 * np.sqrt(3))


def test_splits_and_no_mano(tree):
    val = load_dexycb(tree, "val")
    assert {r["image_id"].split("/")[1] for r in val} == {SEQUENCES[4]} and len(val) == 8
    assert "mano_pose" not in val[0]["annotations"][0]
    assert load_dexycb(tree, "test") == []  # no sequences for subjects 3-10 in the fixture


def test_registration(tree):
    register_dexycb("fixture_dexycb_val", tree, "val", mano_path="")
    try:
        assert len(DatasetCatalog.get("fixture_dexycb_val")) == 8
        models = MetadataCatalog.get("fixture_dexycb_val").object_models
        assert sorted(models) == ["003_cracker_box", "006_mustard_bottle"]
        assert MetadataCatalog.get("fixture_dexycb_val").evaluator_type == "handobj"
    finally:
        DatasetCatalog.remove("fixture_dexycb_val")
        MetadataCatalog.remove("fixture_dexycb_val")


def test_missing_layout_is_listed(tmp_path):
    os.makedirs(tmp_path / DEXYCB_SUBJECTS[0])
    with pytest.raises(FileNotFoundError) as error:
        register_dexycb("fixture_dexycb_incomplete", str(tmp_path), "val")
    message = str(error.value)
    assert DEXYCB_SUBJECTS[1] in message and "models" in message
    assert f"{DEXYCB_SERIALS[0]}_640x480.yml" in message and DEXYCB_SUBJECTS[0] not in message


def test_malformed_files_are_named(tree, tmp_path):
    broken = tmp_path / "labels.npz"
    broken.write_bytes(b"PK\x03\x04 broken zip")
    from handobj_d2.data.datasets.dexycb import read_intrinsics, read_labels

    with pytest.raises(ValueError, match="labels.npz"):
        read_labels(str(broken))
    np.savez(tmp_path / "partial.npz", joint_3d=np.zeros((1, 21, 3)))
    with pytest.raises(ValueError) as error:
        read_labels(str(tmp_path / "partial.npz"))
    assert str(error.value) == (
        f"{tmp_path / 'partial.npz'}: label array(s) joint_2d, pose_y, pose_m missing"
    )
    (tmp_path / "bad.yml").write_text("color: {fx: 1, fy: 2}\n")
    with pytest.raises(ValueError, match="bad.yml"):
        read_intrinsics(str(tmp_path / "bad.yml"))


def test_official_protocol_keeps_every_frame_with_a_hand(tree, caplog):
    with caplog.at_level(logging.INFO):
        records = load_dexycb(tree, "train", mano_path=RANDOM_MANO, dataset_name="fixture")
    # Train positions 0-3: position 0 frames 0 and 2 (hand in and out of the grasp), the
    # left-hand sequence (1), the unposed object (2); position 3 and frame 0/1 have no hand.
    assert len(records) == 4 * 8
    assert "16 frames without a hand" in caplog.text
    assert "8 frames without a pose of the grasped object (kept, hand only)" in caplog.text
    by_sequence = {}
    for record in records:
        by_sequence.setdefault(record["image_id"].split("/")[1], []).append(record)
    assert sorted(by_sequence) == SEQUENCES[:3]
    assert [r["frame_index"] for r in by_sequence[SEQUENCES[0]][:2]] == [0, 2]
    far = by_sequence[SEQUENCES[0]][1]["annotations"]
    assert len(far) == 2 and np.allclose(far[0]["joints3d"], hand_joints(0.3))
    assert far[1]["object_name"] == "006_mustard_bottle"
    (left,) = by_sequence[SEQUENCES[1]][0]["annotations"][:1]
    assert "mano_pose" not in left and np.allclose(left["joints3d"], hand_joints(0.025))
    unposed = by_sequence[SEQUENCES[2]][0]["annotations"]
    assert [a["category_id"] for a in unposed] == [0]
    assert "mano_pose" in unposed[0]


def test_official_and_grasp_names_are_registered():
    metadata = MetadataCatalog.get("dexycb_s0_test")
    assert metadata.dexycb_protocol == "official" and metadata.split == "test"
    assert MetadataCatalog.get("dexycb_s0_test_grasp").dexycb_protocol == "grasp"
    for split in ("train", "val"):
        assert {f"dexycb_s0_{split}", f"dexycb_s0_{split}_grasp"} <= set(DatasetCatalog.list())


def test_subject_without_100_sequences_is_an_error(tmp_path):
    root = tmp_path / "dexycb"
    for path in dexycb_layout("val"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".yml"):
            (root / path).write_text(yaml.safe_dump({"color": intrinsics(0)}))
        else:
            (root / path).mkdir()
    for i in range(99):
        (root / DEXYCB_SUBJECTS[0] / f"seq{i:03d}").mkdir()
    with pytest.raises(ValueError) as error:
        load_dexycb(str(root), "val", dataset_name="fixture")
    message = str(error.value)
    assert f"{root / DEXYCB_SUBJECTS[0]} has 99 sequence folders" in message
    assert "100 per subject" in message


def test_missing_colour_images_are_listed_at_load_time(tree):
    folder = Path(tree, SUBJECT, SEQUENCES[4])
    images = [folder / serial / "color_000000.jpg" for serial in DEXYCB_SERIALS[2:5]]
    for image in images:
        image.unlink()
    try:
        with pytest.raises(FileNotFoundError) as error:
            load_dexycb(tree, "val", dataset_name="fixture")
    finally:
        for image in images:
            image.touch()
    message = str(error.value)
    assert message.startswith("fixture: 3 of 8 colour images are missing: ")
    assert all(str(image) in message for image in images)


@pytest.mark.parametrize("boxes", ["given", "detected"])
def test_a_hand_only_frame_is_evaluated(tree, tmp_path, boxes):
    """The s0 protocol keeps frames whose grasped object has no pose (hand only). Through
    ``trainer.test`` such a frame gets a hand prediction (not a miss: its joints are not all at
    the wrist) and no object score, with given and with detected boxes."""
    records = load_dexycb(tree, "train", mano_path=RANDOM_MANO, dataset_name="fixture")
    (record,) = [r for r in records if len(r["annotations"]) == 1][:1]
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    record = {**record, "file_name": str(tmp_path / "frame.png")}
    assert cv2.imwrite(record["file_name"], image)
    name = f"dexycb_hand_only_{boxes}"
    DatasetCatalog.register(name, lambda: [record])
    models = dexycb_object_models(tree)
    MetadataCatalog.get(name).set(evaluator_type="handobj", object_models=models)
    try:
        cfg = setup_cfg("configs/synthetic/handobj_tiny.yaml", [
            "MODEL.MANO.MODEL_PATH", RANDOM_MANO, "MODEL.HANDOBJ.INFERENCE_BOXES", boxes,
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "DATASETS.TEST", f"('{name}',)",
            "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu",
        ])  # fmt: skip
        torch.manual_seed(0)
        model = HandObjectTrainer.build_model(cfg).eval()
        results = HandObjectTrainer.test(cfg, model)  # one dataset: its results
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert np.isfinite(results["hand"]["MPJPE_mm"]) and "object" not in results
    joints, _ = json.loads((tmp_path / "inference" / name / "pred.json").read_text())
    assert np.ptp(np.asarray(joints[0]), axis=0).max() > 1e-4  # a prediction, not a miss
