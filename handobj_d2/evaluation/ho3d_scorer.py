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

Means are in cm, AUCs over 0-5 cm in 100 steps, per keypoint, then averaged.
"""

import base64
import io
import json
import logging
import os
from collections import OrderedDict

import numpy as np

from .metrics import (
    FSCORE_THRESHOLDS,
    PCK_THRESHOLDS,
    align_scale_translation,
    fscores_of_predictions,
    keypoint_summary,
    point_distances,
    procrustes_align,
    procrustes_transform,
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
# Samples scored at once (bounds memory on the 11,524- and 20,137-sample sets).
CHUNK_SIZE = 1024

# PCK curves of scores.html: key prefix, title (the challenge's), y label, file name.
CURVES = (
    ("xyz", "PCK curve for aligned keypoint error", "keypoints", "pck_xyz.png"),
    (
        "xyz_procrustes_al",
        "PCK curve for procrustes aligned keypoint error",
        "keypoints",
        "pck_xyz_procrustes_al.png",
    ),
    (
        "xyz_scale_trans_al",
        "PCK curve for scale-translation aligned keypoint error",
        "keypoints",
        "pck_xyz_scale_trans_al.png",
    ),
    ("mesh", "PCV curve for mesh error", "vertices", "pcv_mesh.png"),
    ("mesh_al", "PCV curve for aligned mesh error", "vertices", "pcv_mesh_al.png"),
)


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
    """The challenge's alignment of vertices that do not correspond to the ground truth's:
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


def _score_chunk(gt_joints, gt_vertices, pred_joints, pred_vertices, mano_mesh):
    """Per-sample distances and F-scores of one chunk of samples."""
    out = {
        "xyz": point_distances(pred_joints, gt_joints),
        "xyz_procrustes_al": point_distances(procrustes_align(pred_joints, gt_joints), gt_joints),
        "xyz_scale_trans_al": point_distances(
            align_scale_translation(pred_joints, gt_joints, SCALE_BONE), gt_joints
        ),
    }
    if mano_mesh:
        aligned = procrustes_align(pred_vertices, gt_vertices)
        out["mesh"] = point_distances(pred_vertices, gt_vertices)
        out["mesh_al"] = point_distances(aligned, gt_vertices)
    else:
        aligned = align_with_joint_transform(pred_vertices, pred_joints, gt_joints)
    raw, al = fscores_of_predictions([pred_vertices, aligned], gt_vertices, FSCORE_THRESHOLDS)
    out["f"], out["f_al"] = raw[0], al[0]
    return out


def score(gt_joints, gt_vertices, pred_joints, pred_vertices):
    """Challenge scores of arrays (see :func:`load_inputs`) -> (scores, curves).

    scores: OrderedDict over ``SCORE_KEYS`` (floats, the challenge's units); curves: dict
    prefix -> (thresholds in metres (T,), PCK (T,)) for the curves that exist.
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
    # The challenge decides from the first sample; arrays share one vertex count.
    mano_mesh = pred_vertices.shape[1] == gt_vertices.shape[1]
    chunks = [
        _score_chunk(
            gt_joints[i : i + CHUNK_SIZE],
            gt_vertices[i : i + CHUNK_SIZE],
            pred_joints[i : i + CHUNK_SIZE],
            pred_vertices[i : i + CHUNK_SIZE],
            mano_mesh,
        )
        for i in range(0, num, CHUNK_SIZE)
    ]
    per_sample = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

    scores, curves = OrderedDict(), {}
    for prefix in ("xyz", "xyz_procrustes_al", "xyz_scale_trans_al", "mesh", "mesh_al"):
        if prefix in per_sample:
            summary = keypoint_summary(per_sample[prefix], PCK_THRESHOLDS)
            mean_cm, auc = summary["mean"] * 100, summary["auc"]
            curves[prefix] = (summary["thresholds"], summary["pck"])
        else:
            # The challenge sets -1 and then converts the mean to cm like the others.
            mean_cm, auc = -100.0, -1.0
        scores[f"{prefix}_mean3d"] = mean_cm
        scores[f"{prefix}_auc3d"] = auc
    f_raw, f_aligned = per_sample["f"].mean(0), per_sample["f_al"].mean(0)
    for i, threshold in enumerate(FSCORE_THRESHOLDS):
        millimetres = round(threshold * 1000)
        scores[f"f_score_{millimetres}"] = float(f_raw[i])
        scores[f"f_al_score_{millimetres}"] = float(f_aligned[i])
    return OrderedDict((key, scores[key]) for key in SCORE_KEYS), curves


# ----------------------------------------------------------------------------------------------
# Writing


def write_scores(path, scores):
    """``scores.txt`` in the challenge's format: one ``key: %f`` line per score."""
    with open(path, "w") as f:
        for key, value in scores.items():
            f.write("%s: %f\n" % (key, value))


def _plot_png(thresholds_cm, pck, title, y_label):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(111)
    axes.plot(thresholds_cm, pck)
    axes.set_xlabel("Distance in cm")
    axes.set_ylabel(f"Percentage of correct {y_label}")
    axes.set_title(title)
    axes.set_xlim(thresholds_cm[0], thresholds_cm[-1])
    axes.set_ylim(0, 1)
    axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_report(output_dir, scores, curves, version=""):
    """``scores.html`` (scores, PCK curves embedded, raw curve data) and one PNG per curve."""
    title = f"HO3D {version} evaluation".replace("  ", " ")
    rows = "".join(f"<tr><td>{key}</td><td>{value:f}</td></tr>" for key, value in scores.items())
    parts = [
        f"<!DOCTYPE html>\n<html>\n<head><title>{title}</title></head>\n<body>\n",
        f"<h1>{title}</h1>\n<table>{rows}</table>\n<h1>Detailed results:</h1>\n",
    ]
    for prefix, curve_title, y_label, file_name in CURVES:
        if prefix not in curves:
            parts.append(
                f"<h2>{curve_title}</h2>\n<p>Not computed: the predicted meshes do not "
                "have the ground truth's vertices.</p>\n"
            )
            continue
        thresholds, pck = curves[prefix]
        png = _plot_png(thresholds * 100, pck, curve_title, y_label)
        with open(os.path.join(output_dir, file_name), "wb") as f:
            f.write(png)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{curve_title}</h2>\n"
            f'<p><img border="0" src="data:image/png;base64,{data}" alt="{file_name}" '
            'width="576pt" height="432pt"></p>\n'
            f"<p>Raw curve data:</p>\n<p>x_axis: <small>{(thresholds * 100).tolist()}</small></p>\n"
            f"<p>y_axis: <small>{pck.tolist()}</small></p>\n"
        )
    parts.append("</body>\n</html>\n")
    with open(os.path.join(output_dir, "scores.html"), "w") as f:
        f.write("".join(parts))


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
    write_report(output_dir, scores, curves, version)
    return scores
