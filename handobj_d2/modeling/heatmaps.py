"""Heatmap decoding shared by the hand and object decoders: stacked hourglasses (Newell et al.
2016) -> per-point heatmaps -> soft-argmax positions normalised to the ROI box ((0, 0) its
top-left, (1, 1) its bottom-right corner), and the heatmap helpers of the losses and confidences.
"""

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn_relu(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.LeakyReLU()
    )


class PreActBottleneck(nn.Module):
    """Pre-activation residual bottleneck: (BN, LeakyReLU, conv) x 3 with 1x1, 3x3, 1x1 kernels
    through ``out_channels / 2`` channels; a 1x1 conv matches the skip when widths differ."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid = out_channels // 2
        layers = []
        for cin, cout, kernel in ((in_channels, mid, 1), (mid, mid, 3), (mid, out_channels, 1)):
            layers += [
                nn.BatchNorm2d(cin),
                nn.LeakyReLU(),
                nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
            ]
        self.body = nn.Sequential(*layers)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x):
        return self.body(x) + (x if self.skip is None else self.skip(x))


class Hourglass(nn.Module):
    """Recursive hourglass of ``depth`` levels at ``channels`` width (Newell et al. 2016):
    each level adds a full-resolution skip to the upsampled result of the level below."""

    def __init__(self, channels, depth):
        super().__init__()
        self.skip = PreActBottleneck(channels, channels)
        self.down = PreActBottleneck(channels, channels)
        self.inner = (
            Hourglass(channels, depth - 1) if depth > 1 else PreActBottleneck(channels, channels)
        )
        self.up = PreActBottleneck(channels, channels)

    def forward(self, x):
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class HeatmapHead(nn.Module):
    """Stacked hourglasses -> J heatmaps (spatial softmax with a learnable per-joint inverse
    temperature, init 1) -> soft-argmax 2D joints normalised to the box.

    forward(features (N, C, R, R)) -> dict with ``heatmaps``: list per stack of (N, J, R, R)
    probability maps, ``joints2d``: list per stack of (N, J, 2), ``features``: (N, 2P, R, R)
    the last stack's features (P = hourglass planes).
    """

    def __init__(self, in_channels, num_joints, planes, depth, stacks, resolution):
        super().__init__()
        if resolution % 2**depth:
            raise ValueError(
                f"MODEL.HANDOBJ.POOLER_RESOLUTION={resolution} must be divisible by "
                f"2**HOURGLASS_DEPTH={2**depth}"
            )
        width = 2 * planes
        self.input_proj = nn.Conv2d(in_channels, width, 1) if in_channels != width else None
        self.stacks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "hourglass": Hourglass(width, depth),
                    "residual": PreActBottleneck(width, width),
                    "fc": _conv_bn_relu(width, width),
                    "score": nn.Conv2d(width, num_joints, 1),
                }
            )
            for _ in range(stacks)
        )
        # Between stacks the features and heatmaps are fed back into the next stack's input.
        self.remap_features = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stacks - 1))
        self.remap_heatmaps = nn.ModuleList(
            nn.Conv2d(num_joints, width, 1) for _ in range(stacks - 1)
        )
        self.inverse_temperature = nn.Parameter(torch.ones(num_joints))
        centres = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
        self.register_buffer("cell_centres", centres, persistent=False)

    def soft_argmax(self, latents):
        """latents (N, J, R, R) -> heatmaps (N, J, R, R) that sum to 1 and their expected
        positions, joints (N, J, 2) in [0, 1]."""
        n, j, r, _ = latents.shape
        scaled = latents.flatten(2) * self.inverse_temperature[:, None]
        heatmaps = scaled.softmax(-1).view(n, j, r, r)
        x = (heatmaps.sum(2) * self.cell_centres).sum(-1)
        y = (heatmaps.sum(3) * self.cell_centres).sum(-1)
        return heatmaps, torch.stack([x, y], -1)

    def forward(self, x):
        if self.input_proj is not None:
            x = self.input_proj(x)
        all_heatmaps, all_joints = [], []
        for i, stack in enumerate(self.stacks):
            y = stack["fc"](stack["residual"](stack["hourglass"](x)))
            heatmaps, joints = self.soft_argmax(stack["score"](y))
            all_heatmaps.append(heatmaps)
            all_joints.append(joints)
            if i < len(self.stacks) - 1:
                x = x + self.remap_features[i](y) + self.remap_heatmaps[i](heatmaps)
        return {"heatmaps": all_heatmaps, "joints2d": all_joints, "features": y}


def squared_cell_distances(joints2d, resolution):
    """Squared distance, in heatmap cells, from every cell centre of an R x R grid to each
    joint: joints2d (N, J, 2) normalised to the box -> (N, J, R, R), rows along y."""
    r = resolution
    centres = (torch.arange(r, dtype=joints2d.dtype, device=joints2d.device) + 0.5) / r
    dx = (centres - joints2d[..., 0:1]) * r  # (N, J, R) in cells, along x
    dy = (centres - joints2d[..., 1:2]) * r
    return dy[..., :, None] ** 2 + dx[..., None, :] ** 2


def heatmap_confidence(heatmaps, joints2d, radius):
    """Per-joint confidence in [0, 1]: the heatmap probability within ``radius`` cells of the
    soft-argmax position. heatmaps (N, J, R, R), joints2d (N, J, 2) normalised -> (N, J)."""
    near = squared_cell_distances(joints2d, heatmaps.shape[-1]) <= radius**2
    return (heatmaps * near).sum((-2, -1)).clamp(0.0, 1.0)
