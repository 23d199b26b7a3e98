"""The scores of the FreiHAND and HO3D challenges (``scores.txt``, ``scores.html``), shared.

HO3D's ``eval.py`` is FreiHAND's ``eval.py`` with one more joint alignment; both score a
submission ``pred.json`` = ``[joints (N, J, 3), vertices (N, V, 3)]`` against the released
ground truth ``<set>_xyz.json`` / ``<set>_verts.json`` (same frame, metres), per sample:

* joints: raw errors and one error per alignment of the challenge (``JointAlignment``);
* vertices, when the prediction has as many vertices as the ground truth ("MANO" meshes,
  decided from the first sample): raw and Procrustes-aligned errors; otherwise the mesh scores
  are -1 (means x100: -100) and the vertices are aligned with the joints' similarity transform;
* F-scores at 5 and 15 mm of raw and aligned vertices (``metrics.fscores``).

Summaries as the challenges' EvalUtil: the mean over keypoints of the per-keypoint mean error
(written in cm) and of the per-keypoint PCK AUC over 0-5 cm in 100 steps; F-scores averaged
over samples. ``scores.txt`` holds one ``key: %f`` line per score.
"""

import base64
import io
import json
import os
from collections import OrderedDict, namedtuple

import numpy as np

from .metrics import (
    FSCORE_THRESHOLDS,
    PCK_THRESHOLDS,
    fscores_of_predictions,
    keypoint_summary,
    point_distances,
    procrustes_align,
    procrustes_transform,
)

# Samples scored at once (bounds memory on sets of 10^4 samples).
CHUNK_SIZE = 1024

# A joint alignment of a challenge: the key prefix of its scores and ``align(pred (N, J, 3),
# gt (N, J, 3)) -> aligned pred``.
JointAlignment = namedtuple("JointAlignment", ["prefix", "align"])
# One PCK curve of scores.html: key prefix, title, y-axis noun, PNG file name.
Curve = namedtuple("Curve", ["prefix", "title", "noun", "file_name"])


# ----------------------------------------------------------------------------------------------
# Reading


def read_json(path):
    """Parsed JSON of ``path``; a missing or malformed file raises an error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None


def as_point_array(samples, path, what, num_points=None):
    """A JSON list of per-sample point lists -> float64 array (N, P, 3).

    Every sample must have the same shape, (num_points, 3) when given, and finite values;
    otherwise a ValueError names the file, the entry and the problem.
    """
    if not isinstance(samples, list) or not samples:
        raise ValueError(f"{path}: {what} must be a non-empty list of samples")
    expected = f"({num_points}, 3)" if num_points else "(P, 3), the same for every sample"
    try:
        array = np.asarray(samples, dtype=np.float64)
    except (ValueError, TypeError):
        array = None
    if array is None or array.ndim != 3 or array.shape[2] != 3:
        reference = None
        for i, sample in enumerate(samples):
            try:
                shape = np.asarray(sample, dtype=np.float64).shape
            except (ValueError, TypeError):
                raise ValueError(f"{path}: {what} {i} is not a list of 3D points") from None
            if len(shape) != 2 or shape[1] != 3 or (reference is not None and shape != reference):
                raise ValueError(f"{path}: {what} {i} has shape {shape}, expected {expected}")
            reference = shape
        raise ValueError(f"{path}: {what} must be a list of (P, 3) point lists")
    if num_points is not None and array.shape[1] != num_points:
        raise ValueError(f"{path}: {what} have shape {array.shape[1:]}, expected {expected}")
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{path}: {what} {int(np.argmax(bad))} holds NaN or infinite values")
    return array


def load_inputs(xyz_path, verts_path, pred_path):
    """Ground truth and predictions as arrays: gt_joints (N, J, 3), gt_vertices (N, V, 3),
    pred_joints (N, J, 3), pred_vertices (N, W, 3); errors name the file at fault."""
    gt_joints = as_point_array(read_json(xyz_path), xyz_path, "joints")
    gt_vertices = as_point_array(read_json(verts_path), verts_path, "vertices")
    if len(gt_vertices) != len(gt_joints):
        raise ValueError(
            f"{verts_path} has {len(gt_vertices)} samples but {xyz_path} has {len(gt_joints)}"
        )
    pred = read_json(pred_path)
    if not isinstance(pred, list) or len(pred) != 2:
        raise ValueError(
            f"{pred_path}: expected [joints, vertices], a list of two per-sample lists"
        )
    for what, entries in zip(("joint predictions", "vertex predictions"), pred):
        if not isinstance(entries, list) or len(entries) != len(gt_joints):
            count = len(entries) if isinstance(entries, list) else "no list of"
            raise ValueError(
                f"{pred_path} has {count} {what} but {xyz_path} has {len(gt_joints)} samples"
            )
    pred_joints = as_point_array(pred[0], pred_path, "joint predictions", gt_joints.shape[1])
    pred_vertices = as_point_array(pred[1], pred_path, "vertex predictions")
    return gt_joints, gt_vertices, pred_joints, pred_vertices


# ----------------------------------------------------------------------------------------------
# Scoring


def align_with_joint_transform(pred_vertices, pred_joints, gt_joints):
    """The challenges' alignment of vertices that do not correspond to the ground truth's:
    rotated with the joints' Procrustes rotation about their own centroid, scaled by
    ``s * |gt joints, centred|`` (the joints' factor without the prediction's normalisation),
    moved by the difference of the joint centroids. (N, W, 3) -> (N, W, 3)."""
    scale, R, _ = procrustes_transform(pred_joints, gt_joints)
    pred_norm = np.linalg.norm(pred_joints - pred_joints.mean(1, keepdims=True), axis=(1, 2))
    factor = scale * np.where(pred_norm > 0, pred_norm, 1.0)
    centre = pred_vertices.mean(1, keepdims=True)
    rotated = (pred_vertices - centre) @ np.swapaxes(R, 1, 2)
    shift = gt_joints.mean(1) - pred_joints.mean(1)
    return factor[:, None, None] * rotated + shift[:, None] + centre


def _score_chunk(gt_joints, gt_vertices, pred_joints, pred_vertices, alignments, mano_mesh):
    """Per-sample distances and F-scores of one chunk of samples."""
    out = {"xyz": point_distances(pred_joints, gt_joints)}
    for alignment in alignments:
        aligned_joints = alignment.align(pred_joints, gt_joints)
        out[alignment.prefix] = point_distances(aligned_joints, gt_joints)
    if mano_mesh:
        aligned = procrustes_align(pred_vertices, gt_vertices)
        out["mesh"] = point_distances(pred_vertices, gt_vertices)
        out["mesh_al"] = point_distances(aligned, gt_vertices)
    else:
        aligned = align_with_joint_transform(pred_vertices, pred_joints, gt_joints)
    raw, al = fscores_of_predictions([pred_vertices, aligned], gt_vertices, FSCORE_THRESHOLDS)
    out["f"], out["f_al"] = raw[0], al[0]
    return out


def score(gt_joints, gt_vertices, pred_joints, pred_vertices, alignments):
    """Challenge scores of arrays (see :func:`load_inputs`) -> (scores, curves).

    alignments: the challenge's JointAlignments (FreiHAND: Procrustes; HO3D: Procrustes and
    scale-translation). scores: OrderedDict ``xyz_*``, ``<alignment>_*``, ``mesh_*``,
    ``mesh_al_*`` (``_mean3d`` cm, ``_auc3d``), then ``f_score_<mm>``, ``f_al_score_<mm>`` per
    threshold; curves: dict prefix -> (thresholds in metres (T,), PCK (T,)) for the curves that
    exist.
    """
    num = len(gt_joints)
    if not (len(gt_vertices) == len(pred_joints) == len(pred_vertices) == num):
        raise ValueError(
            f"sample counts differ: ground-truth joints {num}, vertices {len(gt_vertices)}, "
            f"predicted joints {len(pred_joints)}, vertices {len(pred_vertices)}"
        )
    if pred_joints.shape[1:] != gt_joints.shape[1:]:
        raise ValueError(
            f"predicted joints have shape {pred_joints.shape[1:]}, "
            f"the ground truth {gt_joints.shape[1:]}"
        )
    # The challenges decide from the first sample; arrays share one vertex count.
    mano_mesh = pred_vertices.shape[1] == gt_vertices.shape[1]
    chunks = [
        _score_chunk(
            gt_joints[i : i + CHUNK_SIZE],
            gt_vertices[i : i + CHUNK_SIZE],
            pred_joints[i : i + CHUNK_SIZE],
            pred_vertices[i : i + CHUNK_SIZE],
            alignments,
            mano_mesh,
        )
        for i in range(0, num, CHUNK_SIZE)
    ]
    per_sample = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

    scores, curves = OrderedDict(), {}
    prefixes = ["xyz"] + [a.prefix for a in alignments] + ["mesh", "mesh_al"]
    for prefix in prefixes:
        if prefix in per_sample:
            summary = keypoint_summary(per_sample[prefix], PCK_THRESHOLDS)
            mean_cm, auc = summary["mean"] * 100, summary["auc"]
            curves[prefix] = (summary["thresholds"], summary["pck"])
        else:
            # The challenges set -1 and then convert the mean to cm like the others.
            mean_cm, auc = -100.0, -1.0
        scores[f"{prefix}_mean3d"] = mean_cm
        scores[f"{prefix}_auc3d"] = auc
    f_raw, f_aligned = per_sample["f"].mean(0), per_sample["f_al"].mean(0)
    for i, threshold in enumerate(FSCORE_THRESHOLDS):
        millimetres = round(threshold * 1000)
        scores[f"f_score_{millimetres}"] = float(f_raw[i])
        scores[f"f_al_score_{millimetres}"] = float(f_aligned[i])
    return scores, curves


# ----------------------------------------------------------------------------------------------
# Writing


def write_scores(path, scores):
    """``scores.txt`` in the challenges' format: one ``key: %f`` line per score."""
    with open(path, "w") as f:
        for key, value in scores.items():
            f.write("%s: %f\n" % (key, value))


def _plot_png(thresholds_cm, pck, title, noun):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(111)
    axes.plot(thresholds_cm, pck)
    axes.set_xlabel("Distance in cm")
    axes.set_ylabel(f"Percentage of correct {noun}")
    axes.set_title(title)
    axes.set_xlim(thresholds_cm[0], thresholds_cm[-1])
    axes.set_ylim(0, 1)
    axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_report(output_dir, scores, curves, title, curve_specs):
    """``scores.html`` (scores, the PCK curves of ``curve_specs`` (Curves) embedded, raw curve
    data) and one PNG per curve in ``output_dir``."""
    rows = "".join(f"<tr><td>{key}</td><td>{value:f}</td></tr>" for key, value in scores.items())
    parts = [
        f"<!DOCTYPE html>\n<html>\n<head><title>{title}</title></head>\n<body>\n",
        f"<h1>{title}</h1>\n<table>{rows}</table>\n<h1>Detailed results:</h1>\n",
    ]
    for spec in curve_specs:
        if spec.prefix not in curves:
            parts.append(
                f"<h2>{spec.title}</h2>\n<p>Not computed: the predicted meshes do not "
                "have the ground truth's vertices.</p>\n"
            )
            continue
        thresholds, pck = curves[spec.prefix]
        png = _plot_png(thresholds * 100, pck, spec.title, spec.noun)
        with open(os.path.join(output_dir, spec.file_name), "wb") as f:
            f.write(png)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{spec.title}</h2>\n"
            f'<p><img border="0" src="data:image/png;base64,{data}" alt="{spec.file_name}" '
            'width="576pt" height="432pt"></p>\n'
            f"<p>Raw curve data:</p>\n<p>x_axis: <small>{(thresholds * 100).tolist()}</small></p>\n"
            f"<p>y_axis: <small>{pck.tolist()}</small></p>\n"
        )
    parts.append("</body>\n</html>\n")
    with open(os.path.join(output_dir, "scores.html"), "w") as f:
        f.write("".join(parts))
