"""Losses of the pose heads (weights in MODEL.HANDOBJ.LOSS, passed as floats keyed by the
lower-case key name, e.g. ``{"joints2d": 100.0}``).

Every loss is a mean over the samples that carry its label: a per-sample loss (the mean over the
sample's elements, as ``F.mse_loss`` / ``F.l1_loss`` take it) is multiplied by the sample's
weight (SEMI.PSEUDO_LOSS_WEIGHT for pseudo-labels, else 1) and divided by the number of
labelled samples. A batch without the label gives a zero loss that keeps the graph.
"""

import torch
from detectron2.layers import cat

from ..geometry import axis_angle_to_matrix, pixels_to_box_units
from .heatmaps import squared_cell_distances


def loss_weights(cfg, keys):
    """{key.lower(): float} of the MODEL.HANDOBJ.LOSS ``keys``."""
    return {key.lower(): float(cfg.MODEL.HANDOBJ.LOSS[key]) for key in keys}


def labelled_mean(per_sample, weights):
    """Sum of ``weights * per_sample`` over the (N,) samples divided by the number of samples
    with a non-zero weight (at least 1)."""
    return (per_sample * weights).sum() / (weights > 0).sum().clamp_min(1)


def _mse(pred, target):
    """Per-sample mean squared error of (N, ...) tensors -> (N,)."""
    return (pred - target).square().flatten(1).mean(1)


def gaussian_heatmaps(joints2d, resolution, sigma):
    """Target heatmaps: a Gaussian of ``sigma`` cells around each joint, cut at 3 sigma and
    normalised to sum 1 over the grid.

    joints2d (N, J, 2) normalised to the box -> heatmaps (N, J, R, R) and a (N, J) bool mask of
    the joints whose Gaussian reaches the grid (all-zero heatmaps otherwise)."""
    squared = squared_cell_distances(joints2d, resolution)
    heatmaps = torch.exp(-squared / (2 * sigma**2)) * (squared <= (3 * sigma) ** 2)
    total = heatmaps.sum((-2, -1))
    valid = total > 1e-6
    return heatmaps / total.clamp_min(1e-6)[..., None, None], valid


def heatmap_divergence(heatmaps, target, valid):
    """Per-sample KL(target || heatmaps) averaged over the valid joints: heatmaps and target
    (N, J, R, R) each sum to 1 per joint, valid (N, J) bool -> (N,)."""
    log_ratio = target.clamp_min(1e-12).log() - heatmaps.clamp_min(1e-12).log()
    per_joint = (target * log_ratio).flatten(2).sum(-1) * valid
    return per_joint.sum(1) / valid.sum(1).clamp_min(1)


def stacked_heatmap_divergence(heatmaps, points, sigma):
    """Per-sample heatmap divergence (:func:`heatmap_divergence`) from Gaussians of ``sigma``
    cells at ``points`` (N, J, 2), normalised to the box, averaged over a list of stacks'
    heatmaps (N, J, R, R). Returns it (N,) and the (N, J) bool mask of points with a target."""
    target, valid = gaussian_heatmaps(points, heatmaps[0].shape[-1], sigma)
    divergence = torch.stack([heatmap_divergence(h, target, valid) for h in heatmaps]).mean(0)
    return divergence, valid


def hand_losses(pred, instances, loss_weights, hand_layer, heatmap_sigma):
    """Losses of the hand decoder.

    Args:
        pred: the HandHead outputs (``heatmaps`` and ``joints2d`` lists per stack, ``rotmats``,
            ``mano_shape``, ``vertices``, ``joints3d``), rows in the order of ``instances``.
        instances (list[Instances]): per image the training pairs with ``gt_hand_boxes``,
            ``gt_joints2d`` (px), ``gt_joints3d`` (m, root-relative), ``gt_mano_pose``,
            ``gt_mano_shape``, ``gt_loss_weight`` and the flags ``gt_has_hand``,
            ``gt_has_joints2d``, ``gt_has_joints3d``, ``gt_has_mano``.
        loss_weights (dict[str, float]): ``joints2d``, ``heatmap``, ``vertices3d``,
            ``joints3d``, ``mano_pose``, ``mano_shape``, ``pseudo_joints3d``,
            ``shape_regularizer``, ``pose_regularizer``.
        hand_layer: the model's HandLayer (ground-truth vertices from ground-truth MANO).
        heatmap_sigma (float): heatmap cells, the Gaussian of the heatmap loss.

    With 2D joints: the 2D joint loss and, when ``heatmap`` > 0, the heatmap divergence.
    With MANO labels: 2D joints, vertices, 3D joints, pose rotation matrices and shape. With
    3D joints only (pseudo-labels): 2D joints, 3D joints and regularisers pulling the shape to
    the mean and the finger rotations to the flat hand (identity).
    """
    w = loss_weights

    def field(name):
        return cat([x.get(name) for x in instances])

    weights = field("gt_loss_weight")
    has_hand = field("gt_has_hand").float()
    has_mano = field("gt_has_mano").float() * has_hand
    has_joints3d = field("gt_has_joints3d")
    joints_only = has_joints3d.float() * (1 - has_mano) * has_hand
    gt_joints2d = pixels_to_box_units(
        field("gt_joints2d"), cat([x.gt_hand_boxes.tensor for x in instances])
    )
    gt_mano_shape = field("gt_mano_shape")
    joints2d = torch.stack([_mse(j, gt_joints2d) for j in pred["joints2d"]]).mean(0)
    has_joints2d = weights * has_hand * field("gt_has_joints2d").float()
    losses = {"loss_joints2d": w["joints2d"] * labelled_mean(joints2d, has_joints2d)}
    if w["heatmap"] > 0:
        divergence, _ = stacked_heatmap_divergence(pred["heatmaps"], gt_joints2d, heatmap_sigma)
        losses["loss_heatmap"] = w["heatmap"] * labelled_mean(divergence, has_joints2d)
    with torch.no_grad():
        gt_rotmats = axis_angle_to_matrix(field("gt_mano_pose").view(-1, 16, 3))
        gt_vertices, gt_mano_joints = hand_layer.forward_rotmats(gt_rotmats, gt_mano_shape)
        gt_joints3d = torch.where(has_joints3d.view(-1, 1, 1), field("gt_joints3d"), gt_mano_joints)
    joints3d_weights = w["joints3d"] * has_mano + w["pseudo_joints3d"] * joints_only
    eye = torch.eye(3, dtype=pred["rotmats"].dtype, device=pred["rotmats"].device)
    losses.update(
        {
            "loss_vertices3d": w["vertices3d"]
            * labelled_mean(_mse(pred["vertices"], gt_vertices), weights * has_mano),
            "loss_joints3d": labelled_mean(
                _mse(pred["joints3d"], gt_joints3d), weights * joints3d_weights
            ),
            "loss_mano_pose": w["mano_pose"]
            * labelled_mean(_mse(pred["rotmats"], gt_rotmats), weights * has_mano),
            "loss_mano_shape": w["mano_shape"]
            * labelled_mean(_mse(pred["mano_shape"], gt_mano_shape), weights * has_mano),
            "loss_shape_regularizer": w["shape_regularizer"]
            * labelled_mean(pred["mano_shape"].square().mean(1), weights * joints_only),
            "loss_pose_regularizer": w["pose_regularizer"]
            * labelled_mean(_mse(pred["rotmats"][:, 1:], eye), weights * joints_only),
        }
    )
    return losses


def voting_losses(pred, gt_points, masks, weights, loss_weights):
    """Losses of the voting object decoder.

    Args:
        pred: VotingObjectHead outputs ``coords`` (N, P, R, R, 2) and ``confidence`` (N, P, R, R).
        gt_points: (N, P, 2) control points normalised to the object box.
        masks: (N, R, R) bool, the object's mask pooled to the object box grid.
        weights: (N,) per-sample weights, 0 for samples without an object pose.
        loss_weights (dict[str, float]): ``object_coords``, ``object_confidence``.

    Coordinates: L1 (|dx| + |dy|) inside the mask, averaged over all cells and points.
    Confidence: L1 to exp(-||pred - gt||) inside the mask (no gradient) and to 0 outside.
    """
    inside = masks[:, None, :, :, None].to(pred["coords"].dtype)
    error = (pred["coords"] - gt_points[:, :, None, None]) * inside
    with torch.no_grad():
        conf_target = torch.exp(-error.norm(dim=-1)) * inside[..., 0]
    conf_error = (pred["confidence"] - conf_target).abs().flatten(1).mean(1)
    return {
        "loss_object_coords": loss_weights["object_coords"]
        * labelled_mean(error.abs().sum(-1).flatten(1).mean(1), weights),
        "loss_object_confidence": loss_weights["object_confidence"]
        * labelled_mean(conf_error, weights),
    }


def control_point_heatmap_losses(pred, gt_points, weights, loss_weights, sigma):
    """Losses of the heatmap object decoder, averaged over its stacks.

    Args:
        pred: HeatmapObjectHead outputs ``heatmaps`` (per stack (N, P, R, R)) and
            ``control_points`` (per stack (N, P, 2) normalised to the object box).
        gt_points: (N, P, 2) control points normalised to the object box.
        weights: (N,) per-sample weights, 0 for samples without an object pose.
        loss_weights (dict[str, float]): ``object_heatmap``, ``object_points``.
        sigma (float): heatmap cells.

    Heatmaps: KL divergence from a Gaussian of ``sigma`` cells at each control point.
    Positions: L1 (|dx| + |dy|) of the soft-argmax, in object-box units. Both over the points
    whose Gaussian reaches the grid (a control point far outside the box has no target).
    """
    divergence, valid = stacked_heatmap_divergence(pred["heatmaps"], gt_points, sigma)
    counts = valid.sum(1).clamp_min(1)
    position = torch.stack(
        [((p - gt_points).abs().sum(-1) * valid).sum(1) / counts for p in pred["control_points"]]
    )
    return {
        "loss_object_heatmap": loss_weights["object_heatmap"] * labelled_mean(divergence, weights),
        "loss_object_points": loss_weights["object_points"]
        * labelled_mean(position.mean(0), weights),
    }
