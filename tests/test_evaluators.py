"""HandPoseEvaluator and ObjectPoseEvaluator on a tiny in-memory dataset with hand-built model
outputs whose errors are known in closed form."""

import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluators, print_csv_format
from detectron2.structures import Instances
from scipy.spatial.transform import Rotation

from handobj_d2.config import add_handobj_config
from handobj_d2.constants import HAND_CLASS, OBJECT_CLASS
from handobj_d2.engine import HandObjectTrainer
from handobj_d2.evaluation import HandPoseEvaluator, ObjectPoseEvaluator
from handobj_d2.geometry import MANOPTH_TO_HO3D, box_control_points
from handobj_d2.mano import HandLayer

RANDOM_MANO = str(Path(__file__).parent / "fixtures" / "mano" / "mano_format_random_chumpy.pkl")
K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
OFFSET = np.array([0.0, 0.006, 0.008])  # 1 cm, added to every predicted hand point
OFFSET_2D = np.array([3.0, -4.0])  # 5 px
BOX = np.array([[x, y, z] for x in (-0.05, 0.05) for y in (-0.03, 0.03) for z in (-0.02, 0.02)])
# A ring of 12 points (radius 3 cm) at two heights: symmetric under a half turn about z.
RING = np.array(
    [[0.03 * np.cos(a), 0.03 * np.sin(a), z]
     for a in np.arange(12) * np.pi / 6 for z in (-0.04, 0.04)]
)  # fmt: skip
MUG = np.array([[0.04, 0.0, 0.0], [-0.04, 0.0, 0.0], [0.0, 0.04, 0.05], [0.0, -0.04, -0.05]])


def _project(points):
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.fixture(scope="module")
def hand_layer():
    return HandLayer(RANDOM_MANO)


@pytest.fixture()
def dataset(hand_layer):
    """Five records: four with hand and object poses (objects box, box, ring, mug), one with
    only the hand root (like HO3D's evaluation split)."""
    rng = np.random.default_rng(0)
    poses = rng.normal(0, 0.3, (5, 48))
    shapes = rng.normal(0, 1.0, (5, 10))
    with torch.no_grad():
        vertices, joints = hand_layer(
            torch.tensor(poses, dtype=torch.float32), torch.tensor(shapes, dtype=torch.float32)
        )
    vertices, joints = vertices.double().numpy(), joints.double().numpy()
    objects = ["box", "box", "ring", "mug"]
    records = []
    for i in range(5):
        root = np.array([0.02 * i, -0.01, 0.5 + 0.02 * i])
        hand = {"category_id": HAND_CLASS, "bbox": [0, 0, 10, 10], "bbox_mode": 0}
        if i < 4:
            hand.update(
                joints3d=joints[i] + root,
                joints2d=_project(joints[i] + root),
                mano_pose=poses[i],
                mano_shape=shapes[i],
            )
        else:
            hand["root3d"] = root
        annotations = [hand]
        if i < 4:
            name = objects[i]
            points = {"box": BOX, "ring": RING, "mug": MUG}[name]
            annotations.append(
                {
                    "category_id": OBJECT_CLASS,
                    "bbox": [0, 0, 10, 10],
                    "bbox_mode": 0,
                    "object_name": name,
                    "object_R": Rotation.from_euler("xyz", [20 * i, -30, 10]).as_matrix(),
                    "object_t": root + np.array([0.06, 0.0, 0.05]),
                    "control_points3d": box_control_points(points),
                    "object_diameter": 0.1,
                }
            )
        records.append(
            {
                "file_name": f"/nowhere/{i}.png",
                "image_id": f"seq/{i:04d}",
                "height": 480,
                "width": 640,
                "camera_K": K,
                "annotations": annotations,
            }
        )
    name = f"test_handobj_eval_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        evaluator_type="handobj",
        object_models={
            "box": {"points": BOX, "diameter": 0.12, "symmetric": False},
            "ring": {"points": RING, "diameter": 0.1, "symmetric": True},
        },
        unseen_objects=["mug"],
    )
    yield name, records, vertices
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _outputs(records, gt_vertices):
    """One model output per record: hand points off by OFFSET (2D by OFFSET_2D); object poses:
    box 3 mm off, box 20 mm deeper, ring turned by its symmetry, mug's PnP failed; the
    root-only record has no hand-object pair."""
    object_poses = []
    outputs = []
    for i, record in enumerate(records):
        pairs = Instances((480, 640))
        if i == 4:
            pairs.pred_joints3d = torch.zeros(0, 21, 3)
            outputs.append({"instances": pairs})
            continue
        hand, obj = record["annotations"]
        joints = hand["joints3d"] - hand["joints3d"][0]
        R, t, valid = obj["object_R"], obj["object_t"], True
        if i == 0:
            t = t + np.array([0.0018, 0.0024, 0.0])
        elif i == 1:
            t = t + np.array([0.0, 0.0, 0.02])
        elif i == 2:
            R = R @ Rotation.from_euler("z", 180, degrees=True).as_matrix()
        else:
            R, t, valid = np.full((3, 3), np.nan), np.full(3, np.nan), False
        object_poses.append((R, t, valid))
        fields = {
            "joints3d": joints + OFFSET,
            "vertices": gt_vertices[i] + OFFSET,
            "joints2d": hand["joints2d"] + OFFSET_2D,
            "object_R": R,
            "object_t": t,
        }
        for key, value in fields.items():
            pairs.set(f"pred_{key}", torch.tensor(np.asarray(value)[None], dtype=torch.float32))
        pairs.pred_object_pose_valid = torch.tensor([valid])
        pairs.pred_has_object = torch.tensor([True])
        outputs.append({"instances": pairs})
    return outputs, object_poses


def _run(evaluators, records, outputs):
    evaluators.reset()
    # Processing order and batching differ from the dataset's order.
    order = [3, 1, 4, 0, 2]
    for start in (0, 2):
        batch = order[start : start + 2] if start == 0 else order[start:]
        evaluators.process([{"image_id": records[i]["image_id"]} for i in batch],
                           [outputs[i] for i in batch])  # fmt: skip
    return evaluators.evaluate()


def test_hand_metrics_pred_json_and_object_metrics(dataset, hand_layer, tmp_path, caplog):
    name, records, gt_vertices = dataset
    outputs, object_poses = _outputs(records, gt_vertices)
    evaluators = DatasetEvaluators(
        [
            HandPoseEvaluator(name, output_dir=str(tmp_path), hand_layer=hand_layer),
            ObjectPoseEvaluator(name, output_dir=str(tmp_path)),
        ]
    )
    with caplog.at_level(logging.WARNING):
        results = _run(evaluators, records, outputs)

    hand = results["hand"]
    # Every root-relative joint and vertex is off by |OFFSET| = 10 mm; alignment removes it.
    assert hand["MPJPE_mm"] == pytest.approx(10.0, abs=1e-4)
    assert hand["MPVPE_mm"] == pytest.approx(10.0, abs=1e-4)
    assert hand["PA_MPJPE_mm"] < 1e-3 and hand["PA_MPVPE_mm"] < 1e-3
    assert hand["joints2d_px"] == pytest.approx(5.0, abs=1e-3)
    # PCK steps from 0 to 1 at 10 mm: the AUC is the area right of the step (thresholds of
    # 50/99 mm; the step falls on the 20th at 9.596 mm < 10 < 10.101 mm).
    step = 0.05 / 99
    k = int(np.ceil(0.01 / step))
    expected_auc = 100 * (0.05 - k * step + step / 2) / 0.05
    assert hand["AUC"] == pytest.approx(expected_auc, abs=1e-6)
    assert hand["PA_AUC"] > 99.4 and hand["PA_mesh_AUC"] > 99.4
    assert hand["F5"] == pytest.approx(100.0) and hand["F15"] == pytest.approx(100.0)

    obj = results["object"]
    # box: one 3 mm error (hit, 0.1 x 120 mm = 12 mm), one 20 mm (miss); ring: its symmetry
    # (ADD-S 0, hit); mug: failed PnP (miss).
    assert obj["ADD0.1D_box"] == 50.0 and obj["ADD0.1D_ring"] == 100.0
    assert obj["ADD0.1D_mug"] == 0.0
    assert obj["ADD0.1D_seen"] == 75.0 and obj["ADD0.1D_unseen"] == 0.0
    assert obj["pose_valid"] == 75.0
    ring_add = np.mean(2 * np.linalg.norm(RING[:, :2], axis=1))  # a half turn: 2 x radius
    assert obj["ADD_mm"] == pytest.approx(1000 * np.mean([0.003, 0.02, ring_add]))
    # Control points and reprojection, recomputed one point at a time.
    control, reprojection = [], []
    for i in range(3):
        annotation = records[i]["annotations"][1]
        R, t, _ = object_poses[i]
        gt_R, gt_t = annotation["object_R"], annotation["object_t"]
        control.append(
            np.mean([np.linalg.norm(R @ p + t - gt_R @ p - gt_t)
                     for p in annotation["control_points3d"]])
        )  # fmt: skip
        points = {"box": BOX, "ring": RING}[annotation["object_name"]]
        reprojection.append(
            np.mean([np.linalg.norm(_project((R @ p + t)[None]) - _project((gt_R @ p + gt_t)[None]))
                     for p in points])
        )  # fmt: skip
    assert obj["control_points_mm"] == pytest.approx(1000 * np.mean(control), rel=1e-6)
    assert obj["reprojection_px"] == pytest.approx(np.mean(reprojection), rel=1e-6)
    assert obj["REP5px"] == pytest.approx(100 * sum(e < 5 for e in reprojection) / 4)
    assert "no model of object 'mug'" in caplog.text
    assert "1 of 5 images have no hand prediction" in caplog.text
    print_csv_format(results)  # Detectron2's printing of flat float dicts

    # Per-frame errors of the four images with 3D joints, in dataset order: 10 mm off, PA 0.
    per_frame = json.loads((tmp_path / "hand_per_frame.json").read_text())
    assert per_frame["image_id"] == [r["image_id"] for r in records[:4]]
    assert per_frame["MPJPE_mm"] == pytest.approx([10.0] * 4, abs=1e-4)
    assert max(per_frame["PA_MPJPE_mm"]) < 1e-3

    # pred.json: dataset order, root placed back, OpenGL frame, HO3D joint order, metres.
    joints, vertices = json.loads((tmp_path / "pred.json").read_text())
    assert len(joints) == len(vertices) == 5
    flip = np.array([1.0, -1.0, -1.0])
    for i in range(4):
        hand = records[i]["annotations"][0]
        root = hand["joints3d"][0]
        expected = ((hand["joints3d"] - root + OFFSET + root) * flip)[MANOPTH_TO_HO3D]
        np.testing.assert_allclose(joints[i], expected, atol=2e-6)
        np.testing.assert_allclose(vertices[i], (gt_vertices[i] + OFFSET + root) * flip, atol=2e-6)
    root = records[4]["annotations"][0]["root3d"] * flip  # no prediction: all at the root
    np.testing.assert_allclose(joints[4], np.tile(root, (21, 1)), atol=1e-6)
    assert np.shape(vertices[4]) == (778, 3)
    poses = json.loads((tmp_path / "object_poses.json").read_text())
    assert [p["image_id"] for p in poses] == [r["image_id"] for r in records]
    assert [p["valid"] for p in poses] == [True, True, True, False, False]


def test_a_pair_without_object_scores_the_hand_and_misses_the_object(dataset, tmp_path):
    """Record 0's prediction is a hand without an object (``pred_has_object`` False, NaN object
    fields): its hand counts as before, its annotated object is a miss; the box class keeps
    record 1's miss, so no box pose is found."""
    name, records, gt_vertices = dataset
    outputs, _ = _outputs(records, gt_vertices)
    alone = outputs[0]["instances"]
    alone.pred_has_object = torch.tensor([False])
    alone.pred_object_R = torch.full((1, 3, 3), float("nan"))
    alone.pred_object_t = torch.full((1, 3), float("nan"))
    alone.pred_object_pose_valid = torch.tensor([False])
    evaluators = DatasetEvaluators(
        [HandPoseEvaluator(name, output_dir=str(tmp_path)), ObjectPoseEvaluator(name)]
    )
    results = _run(evaluators, records, outputs)
    assert results["hand"]["MPJPE_mm"] == pytest.approx(10.0, abs=1e-4)
    assert results["object"]["ADD0.1D_box"] == 0.0 and results["object"]["pose_valid"] == 50.0


def test_without_3d_ground_truth_only_pred_json_is_written(dataset, tmp_path):
    name, records, gt_vertices = dataset
    outputs, _ = _outputs(records, gt_vertices)
    evaluator = HandPoseEvaluator(name, output_dir=str(tmp_path), distributed=False)
    # Only the root-only record takes part: no joints3d, no metrics.
    evaluator.process([{"image_id": records[4]["image_id"]}], [outputs[4]])
    assert evaluator.evaluate() == {}
    joints, _ = json.loads((tmp_path / "pred.json").read_text())
    assert len(joints) == 5


def test_trainer_builds_both_evaluators_for_handobj_datasets(dataset, tmp_path):
    from detectron2.config import get_cfg

    cfg = add_handobj_config(get_cfg())
    cfg.MODEL.MANO.MODEL_PATH = RANDOM_MANO
    evaluator = HandObjectTrainer.build_evaluator(cfg, dataset[0], str(tmp_path))
    kinds = [type(e) for e in evaluator._evaluators]
    assert kinds == [HandPoseEvaluator, ObjectPoseEvaluator]
