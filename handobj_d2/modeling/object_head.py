"""Object decoder: shared conv blocks -> per grid cell and control point a confidence and a 2D
position (a dense voting field, as in Hu et al.'s segmentation-driven pose).

For N object boxes, P = 21 control points and an R x R grid (R = 32):
``coords`` (N, P, R, R, 2) are the positions each cell predicts for each control point,
normalised to the object box ((0, 0) top-left, (1, 1) bottom-right corner): the cell centre
plus ``OFFSET_SCALE`` x the predicted offset. ``confidence`` (N, P, R, R) in (0, 1).
"""

import torch
from torch import nn


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


class ObjectHead(nn.Module):
    """forward(features (N, C, R, R)) -> dict of ``coords`` (N, P, R, R, 2) and ``confidence``
    (N, P, R, R). The output conv's channels are P confidences, P x-offsets, P y-offsets."""

    def __init__(self, cfg, in_channels):
        super().__init__()
        obj = cfg.MODEL.HANDOBJ.OBJECT
        self.num_points = obj.NUM_CONTROL_POINTS
        self.offset_scale = obj.OFFSET_SCALE
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
