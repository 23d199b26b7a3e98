"""Object decoders: ROI features of the object box -> 2D control points, as votes for PnP.

Registered in OBJECT_HEAD_REGISTRY, chosen by MODEL.HANDOBJ.OBJECT.NAME. Each head has
``forward(features (N, C, R, R)) -> dict``, ``losses(pred, pairs, gt_points, weights, loss_cfg)
-> dict`` (``pairs``: the training pairs, per image, with ``gt_object_masks``) and
``votes(pred, object_boxes) -> (votes (N, P, K, 2) pixels, confidence (N, P, K), valid
(N, P, K) bool)``; P = 21 control points, positions normalised to the object box ((0, 0)
top-left, (1, 1) bottom-right corner).

- ``VotingObjectHead`` (the paper's decoder, Hu et al.'s segmentation-driven voting): every grid
  cell on the object predicts every control point; the K most confident cells vote.
- ``HeatmapObjectHead``: one heatmap per control point (the hand decoder's hourglass and
  soft-argmax); one vote per point. Every cell sees the whole ROI, so a point can be placed
  from the faces that meet at it rather than from the features under one cell.
"""

import torch
from detectron2.utils.registry import Registry
from torch import nn

from ..geometry import box_units_to_pixels
from .hand_head import HeatmapHead, heatmap_confidence
from .losses import control_point_heatmap_losses, voting_losses
from .pnp import vote_control_points

OBJECT_HEAD_REGISTRY = Registry("OBJECT_HEAD")
OBJECT_HEAD_REGISTRY.__doc__ = """Object decoders, built as ``head(cfg, in_channels)``."""


def build_object_head(cfg, in_channels):
    """The object decoder named by MODEL.HANDOBJ.OBJECT.NAME."""
    return OBJECT_HEAD_REGISTRY.get(cfg.MODEL.HANDOBJ.OBJECT.NAME)(cfg, in_channels)


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
    """NUM_CONV_BLOCKS conv blocks -> per grid cell and control point a confidence and a 2D
    position: ``coords`` (N, P, R, R, 2), the cell centre plus OFFSET_SCALE x the predicted
    offset, and ``confidence`` (N, P, R, R) in (0, 1). The output conv's channels are P
    confidences, P x-offsets, P y-offsets."""

    def __init__(self, cfg, in_channels):
        super().__init__()
        obj = cfg.MODEL.HANDOBJ.OBJECT
        self.num_points = obj.NUM_CONTROL_POINTS
        self.offset_scale = obj.OFFSET_SCALE
        self.vote_topk = obj.VOTE_TOPK
        self.vote_conf_thresh = obj.VOTE_CONF_THRESH
        self.blocks = nn.Sequential(*(_conv_block(in_channels) for _ in range(obj.NUM_CONV_BLOCKS)))
        self.predictor = nn.Conv2d(in_channels, 3 * self.num_points, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.zeros_(module.bias)

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

    def losses(self, pred, pairs, gt_points, weights, loss_cfg):
        """Voting losses inside the object's mask, pooled to the R x R grid of each box."""
        resolution = pred["confidence"].shape[-1]
        masks = torch.cat(
            [p.gt_object_masks.crop_and_resize(p.object_boxes.tensor, resolution) for p in pairs]
        )
        return voting_losses(pred, gt_points, masks, weights, loss_cfg)

    def votes(self, pred, object_boxes):
        """The ``VOTE_TOPK`` most confident cells per control point; valid above
        ``VOTE_CONF_THRESH``."""
        return vote_control_points(
            pred["coords"], pred["confidence"], object_boxes, self.vote_topk, self.vote_conf_thresh
        )


@OBJECT_HEAD_REGISTRY.register()
class HeatmapObjectHead(nn.Module):
    """Stacked hourglasses (HOURGLASS_* keys of MODEL.HANDOBJ.OBJECT) -> per control point a
    heatmap and its soft-argmax: ``heatmaps`` and ``control_points`` lists per stack of
    (N, P, R, R) probability maps and (N, P, 2) positions. Its vote per point is the last
    stack's position, with the heatmap mass within CONFIDENCE_RADIUS cells as confidence;
    every vote goes to PnP-RANSAC, which drops the outliers."""

    def __init__(self, cfg, in_channels):
        super().__init__()
        obj = cfg.MODEL.HANDOBJ.OBJECT
        self.heatmap_head = HeatmapHead.from_hourglass_cfg(
            obj, in_channels, obj.NUM_CONTROL_POINTS, cfg.MODEL.HANDOBJ.POOLER_RESOLUTION
        )
        self.confidence_radius = obj.CONFIDENCE_RADIUS

    def forward(self, features):
        out = self.heatmap_head(features)
        return {"heatmaps": out["heatmaps"], "control_points": out["joints2d"]}

    def losses(self, pred, pairs, gt_points, weights, loss_cfg):
        return control_point_heatmap_losses(pred, gt_points, weights, loss_cfg)

    def votes(self, pred, object_boxes):
        points = pred["control_points"][-1]
        confidence = heatmap_confidence(pred["heatmaps"][-1], points, self.confidence_radius)
        votes = box_units_to_pixels(points, object_boxes)[:, :, None]
        return (
            votes,
            confidence[..., None],
            torch.ones_like(confidence[..., None], dtype=torch.bool),
        )
