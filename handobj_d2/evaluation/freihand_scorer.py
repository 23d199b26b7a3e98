"""Offline FreiHAND scorer: the official ``eval.py``'s ``scores.txt`` (same keys, format and
values) from ``<set>_xyz.json``, ``<set>_verts.json`` and a submission ``pred.json``.

Inputs (metres, the OpenCV camera frame of FreiHAND's K, joints in FreiHAND's order = manopth's:
wrist, then thumb, index, middle, ring, little finger, each knuckle to tip): ground-truth joints
(N, 21, 3) and vertices (N, 778, 3); ``pred.json`` = ``[joints (N, 21, 3), vertices (N, V, 3)]``.
Scores (``pose_scores``): raw and Procrustes-aligned (scale, rotation, translation: "_al")
joint and mesh errors, mean in cm and PCK AUC over 0-5 cm in 100 steps; F-scores at 5 and 15
mm of raw and aligned vertices. A mesh without 778 vertices gets -100 / -1 mesh scores and is
aligned with the joints' transform, as in ``eval.py``.

Unlike ``eval.py`` (which loops over exactly the 3,960 official samples), every sample of the
files is scored, so smaller sets (the project's synthetic FreiHAND set) score too; a count
other than 3,960 is logged.
"""

import json
import logging
import os
from collections import OrderedDict

from .metrics import procrustes_align
from .pose_scores import Curve, JointAlignment, load_inputs, write_report, write_scores
from .pose_scores import score as score_challenge

logger = logging.getLogger(__name__)

SCORE_KEYS = (
    "xyz_mean3d",
    "xyz_auc3d",
    "xyz_al_mean3d",
    "xyz_al_auc3d",
    "mesh_mean3d",
    "mesh_auc3d",
    "mesh_al_mean3d",
    "mesh_al_auc3d",
    "f_score_5",
    "f_al_score_5",
    "f_score_15",
    "f_al_score_15",
)
EVALUATION_SIZE = 3960  # samples of the official evaluation split
# The official joint alignment: Procrustes with scale.
ALIGNMENTS = (JointAlignment("xyz_al", procrustes_align),)
# PCK curves of scores.html (the official titles).
CURVES = (
    Curve("xyz", "PCK curve for keypoint error", "keypoints", "pck_xyz.png"),
    Curve("xyz_al", "PCK curve for aligned keypoint error", "keypoints", "pck_xyz_al.png"),
    Curve("mesh", "PCV curve for mesh error", "vertices", "pcv_mesh.png"),
    Curve("mesh_al", "PCV curve for aligned mesh error", "vertices", "pcv_mesh_al.png"),
)


def score(gt_joints, gt_vertices, pred_joints, pred_vertices):
    """FreiHAND scores of arrays (``pose_scores.load_inputs``) -> (scores, curves).

    scores: OrderedDict over ``SCORE_KEYS`` (means in cm); curves: dict prefix -> (thresholds
    in metres (T,), PCK (T,)) for the curves that exist.
    """
    arrays = (gt_joints, gt_vertices, pred_joints, pred_vertices)
    scores, curves = score_challenge(*arrays, ALIGNMENTS)
    return OrderedDict((key, scores[key]) for key in SCORE_KEYS), curves


def ground_truth_paths(gt_root, set_name="evaluation"):
    """``<gt_root>/<set>_xyz.json`` and ``<gt_root>/<set>_verts.json``."""
    return tuple(os.path.join(gt_root, f"{set_name}_{kind}.json") for kind in ("xyz", "verts"))


def write_pck_data(path, curves):
    """``pck_data.json`` as ``eval.py`` writes it: prefix -> [thresholds cm, PCK]; a mesh curve
    that was not computed is ``[[0, 100], [-1, -1]]``."""
    data = {}
    for spec in CURVES:
        if spec.prefix in curves:
            thresholds, pck = curves[spec.prefix]
            data[spec.prefix] = [(thresholds * 100).tolist(), pck.tolist()]
        else:
            data[spec.prefix] = [[0.0, 100.0], [-1.0, -1.0]]
    with open(path, "w") as f:
        json.dump(data, f)


def evaluate(pred_path, gt_root, output_dir, set_name="evaluation"):
    """Score the submission ``pred_path`` (a file, or a folder holding ``pred.json``) against
    ``gt_root``'s ``<set>_xyz.json`` / ``<set>_verts.json``; write ``scores.txt``,
    ``scores.html``, the PCK PNGs and ``pck_data.json`` to ``output_dir``. Returns the scores
    (OrderedDict)."""
    if os.path.isdir(pred_path):
        pred_path = os.path.join(pred_path, "pred.json")
    if not os.path.isdir(gt_root):
        raise FileNotFoundError(f"{gt_root}: ground-truth folder not found")
    arrays = load_inputs(*ground_truth_paths(gt_root, set_name), pred_path)
    if set_name == "evaluation" and len(arrays[0]) != EVALUATION_SIZE:
        logger.warning(
            "%d samples; the official FreiHAND evaluation set has %d", len(arrays[0]),
            EVALUATION_SIZE,
        )  # fmt: skip
    scores, curves = score(*arrays)
    os.makedirs(output_dir, exist_ok=True)
    write_scores(os.path.join(output_dir, "scores.txt"), scores)
    write_report(output_dir, scores, curves, "FreiHAND evaluation", CURVES)
    write_pck_data(os.path.join(output_dir, "pck_data.json"), curves)
    return scores
