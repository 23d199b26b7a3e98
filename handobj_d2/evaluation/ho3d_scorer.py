"""Offline HO3D challenge scorer: the challenge's ``scores.txt`` (same keys, format and values)
from ``<set>_xyz.json``, ``<set>_verts.json`` and a ``pred.json``, vectorised.

Inputs (all in the same frame, OpenGL for the challenge, metres): ground-truth joints (N, 21, 3)
in MANO / HO3D joint order and vertices (N, 778, 3); ``pred.json`` = ``[joints, vertices]``
with the same N. As in the challenge (its ``eval.py``, identical for ``--version v2`` and
``v3``), the following are computed per sample and then summarised:

* joints: raw, Procrustes-aligned (scale, rotation, translation) and scale-translation-aligned
  (wrist -> middle knuckle bone length, wrist position) errors;
* vertices, when the prediction has as many vertices as the ground truth ("MANO" meshes): raw
  and Procrustes-aligned errors; otherwise the mesh scores are written as -1 (means x100,
  -100) and the vertices are aligned with the joints' transform, the challenge's way;
* F-scores at 5 and 15 mm of raw and aligned vertices.

Means are in cm, AUCs over 0-5 cm in 100 steps, per keypoint, then averaged. The formulas
are FreiHAND's (``pose_scores``, shared with ``freihand_scorer``) plus the scale-translation
alignment.
"""

import logging
import os
from collections import OrderedDict
from functools import partial

from .metrics import align_scale_translation, procrustes_align
from .pose_scores import (
    Curve,
    JointAlignment,
    load_inputs,
    score as score_challenge,
    write_report,
    write_scores,
)

logger = logging.getLogger(__name__)

SCORE_KEYS = (
    "xyz_mean3d",
    "xyz_auc3d",
    "xyz_procrustes_al_mean3d",
    "xyz_procrustes_al_auc3d",
    "xyz_scale_trans_al_mean3d",
    "xyz_scale_trans_al_auc3d",
    "mesh_mean3d",
    "mesh_auc3d",
    "mesh_al_mean3d",
    "mesh_al_auc3d",
    "f_score_5",
    "f_al_score_5",
    "f_score_15",
    "f_al_score_15",
)
# Sizes of the official evaluation sets; only used to warn about a file of another version.
OFFICIAL_EVALUATION_SIZES = {"v2": 11524, "v3": 20137}
# The challenge's bone for the scale-translation alignment: wrist -> middle knuckle (HO3D order).
SCALE_BONE = (0, 4)
# The challenge's joint alignments: Procrustes (with scale) and scale-translation.
ALIGNMENTS = (
    JointAlignment("xyz_procrustes_al", procrustes_align),
    JointAlignment("xyz_scale_trans_al", partial(align_scale_translation, bone=SCALE_BONE)),
)

# PCK curves of scores.html (the challenge's titles).
CURVES = (
    Curve("xyz", "PCK curve for aligned keypoint error", "keypoints", "pck_xyz.png"),
    Curve(
        "xyz_procrustes_al",
        "PCK curve for procrustes aligned keypoint error",
        "keypoints",
        "pck_xyz_procrustes_al.png",
    ),
    Curve(
        "xyz_scale_trans_al",
        "PCK curve for scale-translation aligned keypoint error",
        "keypoints",
        "pck_xyz_scale_trans_al.png",
    ),
    Curve("mesh", "PCV curve for mesh error", "vertices", "pcv_mesh.png"),
    Curve("mesh_al", "PCV curve for aligned mesh error", "vertices", "pcv_mesh_al.png"),
)


def input_paths(input_dir, pred_file_name="pred.json", set_name="evaluation"):
    """(xyz, verts, pred) paths in ``input_dir``, or in its ``ref/`` and ``res/`` folders (the
    challenge server's layout) when the ground truth is not directly in it."""
    xyz_name, verts_name = f"{set_name}_xyz.json", f"{set_name}_verts.json"
    gt_dir, pred_dir = input_dir, input_dir
    if not os.path.isfile(os.path.join(input_dir, xyz_name)) and os.path.isdir(
        os.path.join(input_dir, "ref")
    ):
        gt_dir, pred_dir = os.path.join(input_dir, "ref"), os.path.join(input_dir, "res")
    return (
        os.path.join(gt_dir, xyz_name),
        os.path.join(gt_dir, verts_name),
        os.path.join(pred_dir, pred_file_name),
    )


def score(gt_joints, gt_vertices, pred_joints, pred_vertices):
    """Challenge scores of arrays (see ``pose_scores.load_inputs``) -> (scores, curves).

    scores: OrderedDict over ``SCORE_KEYS`` (floats, the challenge's units); curves: dict
    prefix -> (thresholds in metres (T,), PCK (T,)) for the curves that exist.
    """
    arrays = (gt_joints, gt_vertices, pred_joints, pred_vertices)
    scores, curves = score_challenge(*arrays, ALIGNMENTS)
    return OrderedDict((key, scores[key]) for key in SCORE_KEYS), curves


def evaluate(
    input_dir, output_dir, pred_file_name="pred.json", set_name="evaluation", version="v2"
):
    """Score ``input_dir``'s files and write ``scores.txt``, ``scores.html`` and the PCK PNGs
    to ``output_dir``. Returns the scores (OrderedDict)."""
    if version not in OFFICIAL_EVALUATION_SIZES:
        raise ValueError(
            f"version must be one of {sorted(OFFICIAL_EVALUATION_SIZES)}, got {version!r}"
        )
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"{input_dir}: input directory not found")
    arrays = load_inputs(*input_paths(input_dir, pred_file_name, set_name))
    official = OFFICIAL_EVALUATION_SIZES[version]
    if set_name == "evaluation" and len(arrays[0]) != official:
        logger.warning(
            "%d samples; the official HO3D %s evaluation set has %d",
            len(arrays[0]),
            version,
            official,
        )
    scores, curves = score(*arrays)
    os.makedirs(output_dir, exist_ok=True)
    write_scores(os.path.join(output_dir, "scores.txt"), scores)
    title = f"HO3D {version} evaluation".replace("  ", " ")
    write_report(output_dir, scores, curves, title, CURVES)
    return scores
