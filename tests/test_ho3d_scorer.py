"""The offline HO3D scorer against an independent, per-sample reference written from the
challenge's formulas (its eval.py / eval_util.py: scipy's orthogonal Procrustes with 1e-8 added
to the norms, all-pairs nearest neighbours, per-keypoint PCK loops), and closed forms."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from handobj_d2.evaluation.ho3d_scorer import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = [
    "xyz_mean3d", "xyz_auc3d", "xyz_procrustes_al_mean3d", "xyz_procrustes_al_auc3d",
    "xyz_scale_trans_al_mean3d", "xyz_scale_trans_al_auc3d", "mesh_mean3d", "mesh_auc3d",
    "mesh_al_mean3d", "mesh_al_auc3d", "f_score_5", "f_al_score_5", "f_score_15",
    "f_al_score_15",
]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Test data: random hands in the OpenGL frame (metres)


def _random_hand(rng, num_vertices=778):
    """21 joints (5 bent fingers of 4 joints after the wrist) and a skin of vertices scattered
    around the bones, rotated at random and placed about 0.5 m in front of the camera."""
    joints = [np.zeros(3)]
    for finger in range(5):
        angle = 0.35 * (finger - 2) + rng.normal(0, 0.05)
        direction = np.array([np.sin(angle), np.cos(angle), 0.0])
        point = 0.07 * direction + rng.normal(0, 0.005, 3)
        for _ in range(4):
            joints.append(point.copy())
            direction = direction + np.array([0.0, 0.0, -0.3]) + rng.normal(0, 0.05, 3)
            direction /= np.linalg.norm(direction)
            point = point + 0.025 * direction
    joints = np.array(joints)[rng.permutation(21)]  # any joint order; joint 0..20
    bones = rng.integers(0, 21, (num_vertices, 2))
    weights = rng.uniform(0, 1, (num_vertices, 1))
    vertices = weights * joints[bones[:, 0]] + (1 - weights) * joints[bones[:, 1]]
    vertices += rng.normal(0, 0.006, vertices.shape)
    R = Rotation.random(random_state=rng).as_matrix()
    shift = np.array([0.0, 0.0, -0.5]) + rng.normal(0, 0.05, 3)
    return joints @ R.T + shift, vertices @ R.T + shift


def _dataset(seed=0, per_level=6):
    """Ground truth and predictions at several noise levels, plus predictions that are
    globally rotated, scaled and translated copies of (noisy) ground truth."""
    rng = np.random.default_rng(seed)
    gt_joints, gt_vertices, pred_joints, pred_vertices = [], [], [], []
    for noise in (0.0005, 0.003, 0.01, 0.03):
        for _ in range(per_level):
            joints, vertices = _random_hand(rng)
            gt_joints.append(joints)
            gt_vertices.append(vertices)
            pred_joints.append(joints + rng.normal(0, noise, joints.shape))
            pred_vertices.append(vertices + rng.normal(0, noise, vertices.shape))
    for _ in range(per_level):
        joints, vertices = _random_hand(rng)
        gt_joints.append(joints)
        gt_vertices.append(vertices)
        R = Rotation.random(random_state=rng).as_matrix()
        scale, shift = rng.uniform(0.7, 1.4), rng.normal(0, 0.05, 3)
        pred_joints.append(scale * (joints + rng.normal(0, 0.002, joints.shape)) @ R.T + shift)
        pred_vertices.append(
            scale * (vertices + rng.normal(0, 0.002, vertices.shape)) @ R.T + shift
        )
    return [np.array(a) for a in (gt_joints, gt_vertices, pred_joints, pred_vertices)]


def _write(folder, gt_joints, gt_vertices, pred_joints, pred_vertices, pred_name="pred.json"):
    os.makedirs(folder, exist_ok=True)
    for name, data in (
        ("evaluation_xyz.json", gt_joints.tolist()),
        ("evaluation_verts.json", gt_vertices.tolist()),
        (pred_name, [pred_joints.tolist(), pred_vertices.tolist()]),
    ):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(data, f)


def _read_scores(path):
    lines = open(path).read().splitlines()
    assert [line.split(":")[0] for line in lines] == KEYS
    for line in lines:
        assert re.fullmatch(r"[a-z0-9_]+: -?\d+\.\d{6}", line), line
    return {key: float(value) for key, value in (line.split(": ") for line in lines)}


# ----------------------------------------------------------------------------------------------
# Independent reference: one sample at a time, straight from the challenge's formulas


def _reference_procrustes(gt, pred):
    """Aligned pred and the transform pieces (R, s, |gt centred|, centroid difference)."""
    gt_centred, pred_centred = gt - gt.mean(0), pred - pred.mean(0)
    gt_norm = np.linalg.norm(gt_centred) + 1e-8
    pred_norm = np.linalg.norm(pred_centred) + 1e-8
    R, s = orthogonal_procrustes(gt_centred / gt_norm, pred_centred / pred_norm)
    aligned = (pred_centred / pred_norm) @ R.T * s * gt_norm + gt.mean(0)
    return aligned, (R, s, gt_norm, gt.mean(0) - pred.mean(0))


def _reference_fscore(gt, pred, threshold):
    all_pairs = cdist(gt, pred)
    gt_to_pred, pred_to_gt = all_pairs.min(1), all_pairs.min(0)
    a = sum(1 for d in pred_to_gt if d < threshold) / len(pred_to_gt)
    b = sum(1 for d in gt_to_pred if d < threshold) / len(gt_to_pred)
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def _reference_summary(per_sample):
    """per_sample: list of (K,) distance arrays -> (mean, auc) as the challenge's EvalUtil."""
    thresholds = np.linspace(0.0, 0.05, 100)
    data = np.array(per_sample)
    means, aucs = [], []
    for k in range(data.shape[1]):
        column = data[:, k]
        means.append(np.mean(column))
        pck = [np.mean(column <= t) for t in thresholds]
        aucs.append(np.trapezoid(pck, thresholds) / np.trapezoid(np.ones(100), thresholds))
    return float(np.mean(means)), float(np.mean(aucs))


def _reference_scores(gt_joints, gt_vertices, pred_joints, pred_vertices):
    errors = {name: [] for name in ("xyz", "pa", "st", "mesh", "mesh_al")}
    f_raw, f_al = [], []
    mano = pred_vertices[0].shape[0] == gt_vertices[0].shape[0]
    for xyz, verts, xyz_pred, verts_pred in zip(gt_joints, gt_vertices, pred_joints, pred_vertices):
        errors["xyz"].append(np.linalg.norm(xyz - xyz_pred, axis=1))
        bone = np.linalg.norm(xyz_pred[4] - xyz_pred[0])
        scaled = (xyz_pred / bone if bone > 0 else xyz_pred) * np.linalg.norm(xyz[4] - xyz[0])
        errors["st"].append(np.linalg.norm(xyz - (scaled - scaled[0] + xyz[0]), axis=1))
        xyz_aligned, (R, s, gt_norm, shift) = _reference_procrustes(xyz, xyz_pred)
        errors["pa"].append(np.linalg.norm(xyz - xyz_aligned, axis=1))
        if mano:
            errors["mesh"].append(np.linalg.norm(verts - verts_pred, axis=1))
            verts_aligned = _reference_procrustes(verts, verts_pred)[0]
            errors["mesh_al"].append(np.linalg.norm(verts - verts_aligned, axis=1))
        else:
            centre = verts_pred.mean(0)
            verts_aligned = (verts_pred - centre) @ R.T * s * gt_norm + shift + centre
        f_raw.append([_reference_fscore(verts, verts_pred, t) for t in (0.005, 0.015)])
        f_al.append([_reference_fscore(verts, verts_aligned, t) for t in (0.005, 0.015)])
    scores = {}
    for name, key in (("xyz", "xyz"), ("pa", "xyz_procrustes_al"), ("st", "xyz_scale_trans_al"),
                      ("mesh", "mesh"), ("mesh_al", "mesh_al")):  # fmt: skip
        mean, auc = _reference_summary(errors[name]) if errors[name] else (-1.0, -1.0)
        scores[f"{key}_mean3d"], scores[f"{key}_auc3d"] = mean * 100, auc
    f_raw, f_al = np.mean(f_raw, 0), np.mean(f_al, 0)
    scores.update(f_score_5=f_raw[0], f_al_score_5=f_al[0], f_score_15=f_raw[1],
                  f_al_score_15=f_al[1])  # fmt: skip
    return scores


# ----------------------------------------------------------------------------------------------
# Tests


def test_scores_match_the_reference_for_mano_meshes(tmp_path):
    data = _dataset(seed=0)
    _write(tmp_path / "in", *data)
    evaluate(str(tmp_path / "in"), str(tmp_path / "out"))
    scores = _read_scores(tmp_path / "out" / "scores.txt")
    expected = _reference_scores(*data)
    for key in KEYS:
        assert scores[key] == pytest.approx(expected[key], abs=1e-5), key
    # The test case spans the metrics' ranges (not all perfect, not all failed).
    assert 0.1 < scores["xyz_auc3d"] < 0.9 and 0.1 < scores["f_al_score_5"] < 0.9
    assert scores["xyz_procrustes_al_mean3d"] < scores["xyz_mean3d"]
    html = open(tmp_path / "out" / "scores.html").read()
    assert html.count("data:image/png;base64,") == 5
    for name in ("pck_xyz", "pck_xyz_procrustes_al", "pck_xyz_scale_trans_al", "pcv_mesh",
                 "pcv_mesh_al"):  # fmt: skip
        assert open(tmp_path / "out" / f"{name}.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_non_mano_meshes_score_like_the_challenge(tmp_path):
    gt_joints, gt_vertices, pred_joints, pred_vertices = _dataset(seed=1, per_level=3)
    rng = np.random.default_rng(5)
    # A 500-point mesh: a subset of the (noisy, partly transformed) predicted vertices.
    pred_vertices = pred_vertices[:, rng.choice(778, 500, replace=False)]
    _write(tmp_path / "ref", gt_joints, gt_vertices, pred_joints, pred_vertices, "mine.json")
    # The challenge server's layout: ground truth in ref/, prediction in res/.
    os.makedirs(tmp_path / "in")
    os.rename(tmp_path / "ref", tmp_path / "in" / "ref")
    os.makedirs(tmp_path / "in" / "res")
    os.rename(tmp_path / "in" / "ref" / "mine.json", tmp_path / "in" / "res" / "mine.json")
    evaluate(str(tmp_path / "in"), str(tmp_path / "out"), "mine.json", version="v3")
    scores = _read_scores(tmp_path / "out" / "scores.txt")
    expected = _reference_scores(gt_joints, gt_vertices, pred_joints, pred_vertices)
    for key in KEYS:
        assert scores[key] == pytest.approx(expected[key], abs=1e-5), key
    assert scores["mesh_mean3d"] == -100.0 and scores["mesh_auc3d"] == -1.0
    assert scores["mesh_al_mean3d"] == -100.0 and scores["mesh_al_auc3d"] == -1.0
    assert not os.path.exists(tmp_path / "out" / "pcv_mesh.png")


def test_closed_forms_identity_and_constant_offset(tmp_path):
    gt_joints, gt_vertices, _, _ = _dataset(seed=2, per_level=1)
    _write(tmp_path / "same", gt_joints, gt_vertices, gt_joints, gt_vertices)
    evaluate(str(tmp_path / "same"), str(tmp_path / "same_out"))
    scores = _read_scores(tmp_path / "same_out" / "scores.txt")
    for key in KEYS:
        perfect = 0.0 if "mean3d" in key else 1.0
        if "_al_auc3d" in key:
            # Aligned copies differ from the ground truth by rounding (1e-17 m), so they miss
            # only the threshold 0: at worst half of the first of 99 intervals.
            assert 1 - 1 / 198 <= scores[key] <= 1.0, key
        else:
            assert scores[key] == pytest.approx(perfect, abs=1e-6), key
    # Everything shifted by 1.2 cm: raw errors 1.2 cm, aligned ones 0.
    offset = np.array([0.0, 0.012, 0.0])
    _write(tmp_path / "shift", gt_joints, gt_vertices, gt_joints + offset, gt_vertices + offset)
    evaluate(str(tmp_path / "shift"), str(tmp_path / "shift_out"))
    scores = _read_scores(tmp_path / "shift_out" / "scores.txt")
    assert scores["xyz_mean3d"] == pytest.approx(1.2, abs=1e-6)
    assert scores["mesh_mean3d"] == pytest.approx(1.2, abs=1e-6)
    # PCK is 0 below 1.2 cm and 1 from the first threshold at or above it (step 5/99 cm).
    k = int(np.ceil(0.012 / (0.05 / 99)))
    step = 0.05 / 99
    assert scores["xyz_auc3d"] == pytest.approx((0.05 - k * step + step / 2) / 0.05, abs=1e-6)
    for key in ("xyz_procrustes_al_mean3d", "xyz_scale_trans_al_mean3d", "mesh_al_mean3d"):
        assert scores[key] == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_give_clear_errors(tmp_path):
    gt_joints, gt_vertices, pred_joints, pred_vertices = _dataset(seed=3, per_level=1)
    folder = str(tmp_path / "in")
    out = str(tmp_path / "out")

    def error(*texts):
        with pytest.raises((OSError, ValueError)) as raised:
            evaluate(folder, out)
        for text in texts:
            assert text in str(raised.value)

    _write(folder, gt_joints, gt_vertices, pred_joints[:-1], pred_vertices)
    error("pred.json has 4 joint predictions", "evaluation_xyz.json")
    # the command line: exit status 1 and the message, no traceback
    tool = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate_ho3d.py"), folder,
                           out], capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert tool.returncode == 1
    assert "pred.json has 4 joint predictions" in tool.stderr and "Traceback" not in tool.stderr

    bad = pred_joints.tolist()
    bad[2] = bad[2][:20]
    with open(os.path.join(folder, "pred.json"), "w") as f:
        json.dump([bad, pred_vertices.tolist()], f)
    error("pred.json: joint predictions 2 has shape (20, 3), expected (21, 3)")

    with open(os.path.join(folder, "pred.json"), "w") as f:
        f.write("[[1, 2")
    error("pred.json: not valid JSON")

    bad = pred_vertices.copy()
    bad[1, 7, 2] = np.nan
    _write(folder, gt_joints, gt_vertices, pred_joints, bad)
    error("vertex predictions 1 holds NaN or infinite values")

    _write(folder, gt_joints, gt_vertices[:-1], pred_joints, pred_vertices)
    error("evaluation_verts.json has 4 samples but")

    os.remove(os.path.join(folder, "evaluation_xyz.json"))
    error("evaluation_xyz.json: file not found")
