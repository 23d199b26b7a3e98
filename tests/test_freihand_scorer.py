"""The offline FreiHAND scorer (tools/evaluate_freihand.py) against closed forms (a similarity
transform, a constant offset, F-scores of hand-made point sets) and against the per-sample
reference written from the official eval.py's formulas in test_ho3d_scorer."""

import json
import os
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from test_ho3d_scorer import _dataset, _reference_scores

from handobj_d2.evaluation.freihand_scorer import evaluate
from tools.evaluate_freihand import main as evaluate_freihand_tool

KEYS = [
    "xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d", "mesh_mean3d", "mesh_auc3d",
    "mesh_al_mean3d", "mesh_al_auc3d", "f_score_5", "f_al_score_5", "f_score_15",
    "f_al_score_15",
]  # fmt: skip


def _write(folder, gt_joints, gt_vertices, pred_joints, pred_vertices):
    """FreiHAND root with the released evaluation ground truth, and the submission beside it."""
    os.makedirs(folder, exist_ok=True)
    for name, data in (
        ("evaluation_xyz.json", np.asarray(gt_joints).tolist()),
        ("evaluation_verts.json", np.asarray(gt_vertices).tolist()),
        ("pred.json", [np.asarray(pred_joints).tolist(), np.asarray(pred_vertices).tolist()]),
    ):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(data, f)
    return os.path.join(folder, "pred.json")


def _scores(folder, out):
    evaluate(os.path.join(folder, "pred.json"), folder, out)
    lines = open(os.path.join(out, "scores.txt")).read().splitlines()
    assert [line.split(":")[0] for line in lines] == KEYS
    for line in lines:
        assert re.fullmatch(r"[a-z0-9_]+: -?\d+\.\d{6}", line), line
    return {key: float(value) for key, value in (line.split(": ") for line in lines)}


def _grid(count=778, spacing=0.03):
    """``count`` points on a cubic grid of ``spacing`` m (a mesh whose nearest neighbours are
    known: every other point is at least ``spacing`` away)."""
    side = int(np.ceil(count ** (1 / 3)))
    cells = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return cells[:count] * spacing + np.array([0.0, 0.0, 0.6])


def test_similarity_transform_aligns_to_zero_and_offset_gives_its_mean(tmp_path):
    gt_joints, gt_vertices, _, _ = _dataset(seed=4, per_level=1)
    # pred = s R gt + t: every "_al" error vanishes, raw errors do not.
    rng = np.random.default_rng(1)
    R = Rotation.random(3, random_state=rng).as_matrix()[rng.integers(0, 3, len(gt_joints))]
    scale, shift = rng.uniform(0.8, 1.25, len(gt_joints)), rng.normal(0, 0.05, (len(gt_joints), 3))

    def move(points):
        return scale[:, None, None] * points @ np.swapaxes(R, 1, 2) + shift[:, None]

    _write(tmp_path / "sim", gt_joints, gt_vertices, move(gt_joints), move(gt_vertices))
    scores = _scores(tmp_path / "sim", tmp_path / "sim_out")
    for key in ("xyz_al_mean3d", "mesh_al_mean3d"):
        assert scores[key] == pytest.approx(0.0, abs=1e-6), key
    assert scores["f_al_score_5"] == pytest.approx(1.0) and scores["f_al_score_15"] == 1.0
    assert scores["xyz_mean3d"] > 1.0 and scores["f_score_5"] < 0.5

    # Everything 2 cm off along x: raw means 2.0 cm, aligned 0; PCK 0 below 2 cm, 1 from the
    # first of the 100 thresholds (0-5 cm) at or above it.
    offset = np.array([0.02, 0.0, 0.0])
    _write(tmp_path / "off", gt_joints, gt_vertices, gt_joints + offset, gt_vertices + offset)
    scores = _scores(tmp_path / "off", tmp_path / "off_out")
    assert scores["xyz_mean3d"] == pytest.approx(2.0, abs=1e-6)
    assert scores["mesh_mean3d"] == pytest.approx(2.0, abs=1e-6)
    step = 0.05 / 99
    k = int(np.ceil(0.02 / step - 1e-9))
    auc = (0.05 - k * step + step / 2) / 0.05
    assert scores["xyz_auc3d"] == pytest.approx(auc, abs=1e-6)
    assert scores["mesh_auc3d"] == pytest.approx(auc, abs=1e-6)
    assert scores["xyz_al_mean3d"] == pytest.approx(0.0, abs=1e-6)
    assert scores["f_al_score_5"] == pytest.approx(1.0)


def test_fscore_of_hand_made_point_sets(tmp_path):
    gt_vertices = _grid()[None]
    gt_joints = gt_vertices[:, :21]
    # 78 predicted vertices moved onto other ground-truth points (3 cm away from their own):
    # every predicted point lies on the ground truth (precision 1), but 78 ground-truth points
    # have no prediction within 15 mm (recall 700 / 778).
    pred = gt_vertices.copy()
    pred[0, 700:] = gt_vertices[0, :78]
    _write(tmp_path / "in", gt_joints, gt_vertices, gt_joints, pred)
    scores = _scores(tmp_path / "in", tmp_path / "out")
    recall = 700 / 778
    f = 2 * recall / (1 + recall)
    assert scores["f_score_5"] == pytest.approx(f, abs=1e-6)
    assert scores["f_score_15"] == pytest.approx(f, abs=1e-6)
    # Half of the vertices 1 cm off (less than half the grid spacing): those miss at 5 mm and
    # hit at 15 mm in both directions.
    pred = gt_vertices.copy()
    pred[0, ::2] += np.array([0.0, 0.01, 0.0])
    _write(tmp_path / "in", gt_joints, gt_vertices, gt_joints, pred)
    scores = _scores(tmp_path / "in", tmp_path / "out")
    assert scores["f_score_5"] == pytest.approx(0.5, abs=1e-6)
    assert scores["f_score_15"] == pytest.approx(1.0, abs=1e-6)
    assert scores["mesh_mean3d"] == pytest.approx(0.5, abs=1e-6)


def test_scores_match_the_official_formulas(tmp_path):
    data = _dataset(seed=0, per_level=2)
    _write(tmp_path / "in", *data)
    scores = _scores(tmp_path / "in", tmp_path / "out")
    expected = _reference_scores(*data)
    for key in KEYS:
        reference = key.replace("xyz_al", "xyz_procrustes_al")
        assert scores[key] == pytest.approx(expected[reference], abs=1e-5), key
    html = open(tmp_path / "out" / "scores.html").read()
    assert html.count("data:image/png;base64,") == 4
    curves = json.load(open(tmp_path / "out" / "pck_data.json"))
    assert sorted(curves) == ["mesh", "mesh_al", "xyz", "xyz_al"]
    assert curves["xyz"][0][-1] == pytest.approx(5.0) and len(curves["xyz"][1]) == 100

    # A mesh of another size: mesh scores -1 (means -100 cm), vertices aligned with the joints'
    # transform.
    gt_joints, gt_vertices, pred_joints, pred_vertices = data
    pred_vertices = pred_vertices[:, :500]
    _write(tmp_path / "small", gt_joints, gt_vertices, pred_joints, pred_vertices)
    scores = _scores(tmp_path / "small", tmp_path / "small_out")
    expected = _reference_scores(gt_joints, gt_vertices, pred_joints, pred_vertices)
    assert scores["mesh_mean3d"] == -100.0 and scores["mesh_al_auc3d"] == -1.0
    for key in ("f_score_5", "f_al_score_5", "f_score_15", "f_al_score_15"):
        assert scores[key] == pytest.approx(expected[key], abs=1e-6), key


def test_command_line_prints_json_and_names_bad_inputs(tmp_path, capsys):
    gt_joints, gt_vertices, pred_joints, pred_vertices = _dataset(seed=3, per_level=1)
    pred = _write(tmp_path / "in", gt_joints, gt_vertices, pred_joints, pred_vertices)
    arguments = [pred, str(tmp_path / "in"), str(tmp_path / "out")]
    assert evaluate_freihand_tool(arguments) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == KEYS
    written = open(tmp_path / "out" / "scores.txt").read()
    assert f"xyz_al_mean3d: {printed['xyz_al_mean3d']:f}" in written

    # Bad input: exit status 1 and one line naming the file, no traceback.
    _write(tmp_path / "in", gt_joints, gt_vertices, pred_joints[:-1], pred_vertices)
    assert evaluate_freihand_tool(arguments) == 1
    error = capsys.readouterr().err
    assert "pred.json has 4 joint predictions" in error and "Traceback" not in error
    os.remove(tmp_path / "in" / "evaluation_verts.json")
    with pytest.raises(FileNotFoundError, match="evaluation_verts.json: file not found"):
        evaluate(pred, str(tmp_path / "in"), str(tmp_path / "out"))
