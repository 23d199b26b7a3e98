"""Object decoders: ROI features of the object box -> 2D control points for PnP.

Registered in OBJECT_HEAD_REGISTRY (classes, by name), chosen by MODEL.HANDOBJ.OBJECT.NAME and
built as ``head(cfg, in_channels)`` (``@configurable``). An object decoder has:

* ``forward(features (N, C, R, R)) -> dict``, its raw outputs;
* ``losses(pred, instances) -> dict``: ``instances`` are the training pairs, per image, with the
  ``gt_*`` fields of docs/design.md "Mapper output" (:func:`object_targets` gives the usual
  targets);
* ``inference(pred, object_boxes (N, 4) px) -> (fields, (points, valid))``: ``fields`` holds
  ``pred_control_points2d`` (N, P, 2) px and ``pred_control_points_conf`` (N, P) in [0, 1];
  ``points`` (N, P, V, 2) px with ``valid`` (N, P, V) bool are the V candidate positions per
  control point that PnP-RANSAC uses (V = 1 for a decoder with one position per point).

P = 21 control points; positions inside the heads are normalised to the object box ((0, 0)
top-left, (1, 1) bottom-right corner).

- ``VotingObjectHead`` (the paper's decoder, Hu et al.'s segmentation-driven voting): every grid
  cell on the object predicts every control point; the K most confident cells vote.
- ``HeatmapObjectHead``: one heatmap per control point (the hand decoder's hourglass and
  soft-argmax); one vote per point. Every cell sees the whole ROI, so a point can be placed
  from the faces that meet at it rather than from the features under one cell.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.utils.registry import Registry
from torch import nn

from ..constants import NUM_CONTROL_POINTS
from ..geometry import box_units_to_pixels, pixels_to_box_units
from .heatmaps import HeatmapHead, heatmap_confidence
from .losses import control_point_heatmap_losses, loss_weights, voting_losses
from .pnp import control_point_estimates, vote_control_points

OBJECT_HEAD_REGISTRY = Registry("OBJECT_HEAD")
OBJECT_HEAD_REGISTRY.__doc__ = """Object decoders (classes, by name), built as
``head(cfg, in_channels)``."""


def build_object_head(cfg, in_channels):
    """The object decoder named by MODEL.HANDOBJ.OBJECT.NAME."""
    return OBJECT_HEAD_REGISTRY.get(cfg.MODEL.HANDOBJ.OBJECT.NAME)(cfg, in_channels)


def object_targets(instances):
    """Object boxes (N, 4) px, ground-truth control points (N, P, 2) normalised to the object
    box and per-sample loss weights (N,) (``gt_loss_weight``, 0 without an object pose) of the
    training pairs, concatenated over the images."""
    boxes = cat([x.gt_object_boxes.tensor for x in instances])
    points = pixels_to_box_units(cat([x.gt_control_points2d for x in instances]), boxes)
    weights = cat([x.gt_loss_weight * (x.gt_has_object & x.gt_has_object_pose) for x in instances])
    return boxes, points, weights


def released_mask_cells(masks, boxes, resolution):
    """The released training's object mask grid: each mask (N, H, W) bool, model-input pixels,
    cropped to its box (N, 4) px rounded to whole pixels (half to even, as PIL's ``crop``;
    zeros outside the image) and resized to ``resolution`` x ``resolution`` as PIL's nearest
    ``resize``: cell j takes crop pixel floor((j + 0.5) x side / resolution). -> (N, R, R) bool."""
    n, height, width = masks.shape
    corners = boxes.detach().to(torch.float64).round().long()
    out = masks.new_zeros((n, resolution, resolution), dtype=torch.bool)
    cell = torch.arange(resolution, dtype=torch.float64, device=masks.device) + 0.5
    for i, (x0, y0, x1, y1) in enumerate(corners.tolist()):
        if x1 <= x0 or y1 <= y0:
            continue
        xs = x0 + (cell * ((x1 - x0) / resolution)).floor().long()
        ys = y0 + (cell * ((y1 - y0) / resolution)).floor().long()
        inside = ((ys >= 0) & (ys < height))[:, None] & ((xs >= 0) & (xs < width))[None]
        values = masks[i][ys.clamp(0, height - 1)][:, xs.clamp(0, width - 1)].bool()
        out[i] = values & inside
    return out


MASK_POOLINGS = ("roialign", "released")


def single_candidates(points, confidence):
    """Inference output of a decoder with one position per control point: points (N, P, 2) px
    and confidence (N, P) -> (fields, (points (N, P, 1, 2), all-valid (N, P, 1)))."""
    fields = {"pred_control_points2d": points, "pred_control_points_conf": confidence}
    return fields, (points[:, :, None], torch.ones_like(confidence[..., None], dtype=torch.bool))


def _conv_block(channels):
    """1x1 conv C -> C/2, BN, LeakyReLU(0.1), 3x3 conv C/2 -> C, BN, LeakyReLU(0.1)."""
    inner = channels // 2
    return nn.Sequential(
        nn.Conv2d(channels, inner, 1),
        nn.BatchNorm2d(inner),
        nn.LeakyReLU(0.1),
        nn.Conv2d(inner, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.LeakyReLU(0.1),
    )


@OBJECT_HEAD_REGISTRY.register()
class VotingObjectHead(nn.Module):
    """``num_conv_blocks`` conv blocks -> per grid cell and control point a confidence and a 2D
    position: ``coords`` (N, P, R, R, 2), the cell centre plus ``offset_scale`` x the predicted
    offset, and ``confidence`` (N, P, R, R) in (0, 1). The output conv's channels are P
    confidences, P x-offsets, P y-offsets."""

    @configurable
    def __init__(
        self,
        in_channels,
        *,
        num_conv_blocks,
        offset_scale,
        vote_topk,
        vote_conf_thresh,
        loss_weights,
        mask_pooling="roialign",
        num_points=NUM_CONTROL_POINTS,
    ):
        """
        Args:
            in_channels (int): ROI feature channels.
            num_conv_blocks (int): conv blocks before the output conv.
            offset_scale (float): object-box units per unit of predicted offset.
            vote_topk (int), vote_conf_thresh (float): per control point the ``vote_topk``
                most confident cells vote; a vote is valid above ``vote_conf_thresh``.
            loss_weights (dict[str, float]): ``object_coords``, ``object_confidence``.
            mask_pooling (str): the object mask on the grid, "roialign" (ROIAlign on the box,
                cells >= 0.5) or "released" (:func:`released_mask_cells`).
            num_points (int): control points.
        """
        super().__init__()
        if mask_pooling not in MASK_POOLINGS:
            raise ValueError(
                f"MODEL.HANDOBJ.OBJECT.MASK_POOLING must be one of {MASK_POOLINGS}, got "
                f"{mask_pooling!r}"
            )
        self.mask_pooling = mask_pooling
        self.num_points = num_points
        self.offset_scale = offset_scale
        self.vote_topk = vote_topk
        self.vote_conf_thresh = vote_conf_thresh
        self.loss_weights = dict(loss_weights)
        self.blocks = nn.Sequential(*(_conv_block(in_channels) for _ in range(num_conv_blocks)))
        self.predictor = nn.Conv2d(in_channels, 3 * num_points, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, cfg, in_channels):
        obj = cfg.MODEL.HANDOBJ.OBJECT
        return {
            "in_channels": in_channels,
            "num_conv_blocks": obj.NUM_CONV_BLOCKS,
            "offset_scale": obj.OFFSET_SCALE,
            "vote_topk": obj.VOTE_TOPK,
            "vote_conf_thresh": obj.VOTE_CONF_THRESH,
            "loss_weights": loss_weights(cfg, ("OBJECT_COORDS", "OBJECT_CONFIDENCE")),
            "mask_pooling": obj.MASK_POOLING,
        }

    def forward(self, features):
        out = self.predictor(self.blocks(features))
        n, _, h, w = out.shape
        confidence, dx, dy = out.view(n, 3, self.num_points, h, w).unbind(1)
        cx = (torch.arange(w, dtype=out.dtype, device=out.device) + 0.5) / w
        cy = (torch.arange(h, dtype=out.dtype, device=out.device) + 0.5) / h
        coords = torch.stack(
            [cx + self.offset_scale * dx, cy[:, None] + self.offset_scale * dy], -1
        )
        return {"coords": coords, "confidence": confidence.sigmoid()}

    def losses(self, pred, instances):
        """Voting losses inside the object's mask, pooled to the R x R grid of each box."""
        resolution = pred["confidence"].shape[-1]
        masks = cat([self.mask_cells(x, resolution) for x in instances])
        _, points, weights = object_targets(instances)
        return voting_losses(pred, points, masks, weights, self.loss_weights)

    def mask_cells(self, instances, resolution):
        """The pairs' object masks on the ``resolution`` x ``resolution`` grid of their object
        boxes (MASK_POOLING) -> (N, R, R) bool."""
        masks, boxes = instances.gt_object_masks, instances.gt_object_boxes.tensor
        if self.mask_pooling == "released":
            return released_mask_cells(masks.tensor, boxes, resolution)
        return masks.crop_and_resize(boxes, resolution)

    def inference(self, pred, object_boxes):
        """Votes: the ``vote_topk`` most confident cells per control point (valid above
        ``vote_conf_thresh``); the control point is their confidence-weighted mean."""
        votes, confidence, valid = vote_control_points(
            pred["coords"], pred["confidence"], object_boxes, self.vote_topk, self.vote_conf_thresh
        )
        points, points_conf = control_point_estimates(votes, confidence, valid)
        fields = {"pred_control_points2d": points, "pred_control_points_conf": points_conf}
        return fields, (votes, valid)


@OBJECT_HEAD_REGISTRY.register()
class HeatmapObjectHead(nn.Module):
    """Stacked hourglasses -> per control point a heatmap and its soft-argmax: ``heatmaps`` and
    ``control_points`` lists per stack of (N, P, R, R) probability maps and (N, P, 2) positions.
    Its vote per point is the last stack's position, with the heatmap mass within
    ``confidence_radius`` cells as confidence; every vote goes to PnP-RANSAC, which drops the
    outliers."""

    @configurable
    def __init__(self, *, heatmap_head, loss_weights, heatmap_sigma=1.0, confidence_radius=1.5):
        """
        Args:
            heatmap_head (HeatmapHead): one heatmap per control point.
            loss_weights (dict[str, float]): ``object_heatmap``, ``object_points``.
            heatmap_sigma (float): heatmap cells, the Gaussian of the heatmap loss.
            confidence_radius (float): heatmap cells, see ``heatmap_confidence``.
        """
        super().__init__()
        self.heatmap_head = heatmap_head
        self.loss_weights = dict(loss_weights)
        self.heatmap_sigma = heatmap_sigma
        self.confidence_radius = confidence_radius

    @classmethod
    def from_config(cls, cfg, in_channels):
        obj = cfg.MODEL.HANDOBJ.OBJECT
        return {
            "heatmap_head": HeatmapHead(
                in_channels,
                NUM_CONTROL_POINTS,
                obj.HOURGLASS_PLANES,
                obj.HOURGLASS_DEPTH,
                obj.HOURGLASS_STACKS,
                cfg.MODEL.HANDOBJ.POOLER_RESOLUTION,
            ),
            "loss_weights": loss_weights(cfg, ("OBJECT_HEATMAP", "OBJECT_POINTS")),
            "heatmap_sigma": cfg.MODEL.HANDOBJ.LOSS.HEATMAP_SIGMA,
            "confidence_radius": obj.CONFIDENCE_RADIUS,
        }

    def forward(self, features):
        out = self.heatmap_head(features)
        return {"heatmaps": out["heatmaps"], "control_points": out["joints2d"]}

    def losses(self, pred, instances):
        _, points, weights = object_targets(instances)
        return control_point_heatmap_losses(
            pred, points, weights, self.loss_weights, self.heatmap_sigma
        )

    def inference(self, pred, object_boxes):
        points = pred["control_points"][-1]
        confidence = heatmap_confidence(pred["heatmaps"][-1], points, self.confidence_radius)
        return single_candidates(box_units_to_pixels(points, object_boxes), confidence)
