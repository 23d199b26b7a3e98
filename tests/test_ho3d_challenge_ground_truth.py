"""The HO3D evaluation split with the challenge's released ground truth: the loader turns
evaluation_xyz.json / evaluation_verts.json into joints3d and vertices3d, and the hand evaluator
scores meshes against those vertices."""

import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Instances
from ho3d_fixture import write_ho3d_tree

from handobj_d2.data.datasets import load_ho3d, register_ho3d
from handobj_d2.evaluation import HandPoseEvaluator


def _write_ground_truth(root, joints_gl, verts_gl):
    with open(f"{root}/evaluation_xyz.json", "w") as f:
        json.dump(joints_gl.tolist(), f)
    with open(f"{root}/evaluation_verts.json", "w") as f:
        json.dump(verts_gl.tolist(), f)


@pytest.fixture()
def tree(tmp_path):
    root = write_ho3d_tree(str(tmp_path))
    # MANO order: joint j at (0.01 j, 0.002 j, -0.5) in OpenGL. The thumb tip (manopth joint 4)
    # is MANO joint 16 -> OpenCV (0.16, -0.032, 0.5).
    joints = np.array([[0.01 * j, 0.002 * j, -0.5] for j in range(21)])
    verts = np.tile([0.0, 0.0, -0.5], (778, 1)) + np.linspace(0, 0.1, 778)[:, None] * [1, 1, 0]
    _write_ground_truth(root, joints[None], verts[None])
    return root, verts


def test_evaluation_records_carry_released_ground_truth(tree):
    root, _ = tree
    (record,) = load_ho3d(root, "evaluation", "v2")
    hand = record["annotations"][0]
    assert np.allclose(hand["joints3d"][4], [0.16, -0.032, 0.5])
    assert np.allclose(hand["joints3d"][0], [0.0, 0.0, 0.5])
    assert np.allclose(hand["vertices3d"][-1], [0.1, -0.1, 0.5])
    # The box stays HO3D's handBoundingBox, the root its annotated wrist.
    assert np.allclose(hand["bbox"], [20, 5, 50, 30])
    assert np.allclose(hand["root3d"], [0, 0, 0.5])


def test_ground_truth_of_the_wrong_length_is_named(tree):
    root, _ = tree
    _write_ground_truth(root, np.zeros((2, 21, 3)), np.zeros((2, 778, 3)))
    with pytest.raises(ValueError, match="evaluation_xyz.json: expected 1 entries"):
        load_ho3d(root, "evaluation", "v2")


def test_mesh_metrics_against_released_vertices(tree):
    root, _ = tree
    register_ho3d("challenge_gt_fixture", root, "evaluation", "v2")
    (record,) = DatasetCatalog.get("challenge_gt_fixture")
    hand = record["annotations"][0]
    offset = np.array([0.0, 0.003, 0.004])  # 5 mm on every vertex and joint
    pairs = Instances(
        (48, 64),
        pred_joints3d=torch.tensor(hand["joints3d"] - hand["joints3d"][0] + offset)[None].float(),
        pred_vertices=torch.tensor(hand["vertices3d"] - hand["joints3d"][0] + offset)[None].float(),
    )
    evaluator = HandPoseEvaluator("challenge_gt_fixture", distributed=False)
    evaluator.reset()
    evaluator.process([{"image_id": record["image_id"]}], [{"instances": pairs}])
    metrics = evaluator.evaluate()["hand"]
    assert metrics["MPJPE_mm"] == pytest.approx(5.0, abs=1e-3)
    assert metrics["MPVPE_mm"] == pytest.approx(5.0, abs=1e-3)
    assert metrics["PA_MPVPE_mm"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["F5"] == pytest.approx(100.0)
