"""Hand decoder: hourglass heatmaps -> soft-argmax 2D joints, and a residual encoder + FC layers
-> 16 joint rotations (6D) + 10 shape betas -> MANO mesh.

Shapes, for N hand boxes, J = 21 joints and R x R ROI features (R = 32):

* 2D joints (N, J, 2) are normalised to the hand box: (0, 0) its top-left, (1, 1) its
  bottom-right corner.
* MANO outputs: ``rotmats`` (N, 16, 3, 3) relative joint rotations (global rotation first,
  OpenCV camera frame), ``mano_shape`` (N, 10), ``vertices`` (N, 778, 3) and ``joints3d``
  (N, J, 3) in metres, wrist at the origin.
"""

import torch
from torch import nn
from torch.nn import functional as F

from ..geometry import rot6d_to_matrix
from ..mano import build_hand_layer

# Identity rotation in the 6D representation (first two columns of I).
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
NUM_MANO_ROTATIONS = 16
NUM_BETAS = 10


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

    @classmethod
    def from_hourglass_cfg(cls, node, in_channels, num_joints, resolution):
        """Built from a config node's HOURGLASS_PLANES, HOURGLASS_DEPTH and HOURGLASS_STACKS
        (MODEL.HANDOBJ.HAND or MODEL.HANDOBJ.OBJECT)."""
        return cls(
            in_channels,
            num_joints,
            node.HOURGLASS_PLANES,
            node.HOURGLASS_DEPTH,
            node.HOURGLASS_STACKS,
            resolution,
        )

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


class MeshHead(nn.Module):
    """Heatmaps + features -> 4 blocks of 2 residual modules, each followed by 2x2 max-pool ->
    flatten -> FC layers (LeakyReLU) -> 16 6D rotations and 10 betas -> hand layer.

    forward(heatmaps (N, J, R, R), features (N, F, R, R)) -> dict of ``rotmats``
    (N, 16, 3, 3), ``mano_shape`` (N, 10), ``vertices`` (N, 778, 3), ``joints3d`` (N, J, 3).
    """

    num_blocks = 4

    def __init__(self, num_joints, feature_channels, channels, resolution, fc_dims, hand_layer):
        super().__init__()
        if resolution % 2**self.num_blocks:
            raise ValueError(
                f"MODEL.HANDOBJ.POOLER_RESOLUTION={resolution} must be divisible by "
                f"{2**self.num_blocks} for the mesh encoder"
            )
        self.heatmap_conv = nn.Conv2d(num_joints, channels, 1)
        self.feature_conv = nn.Conv2d(feature_channels, channels, 1)
        encoder = []
        for _ in range(self.num_blocks):
            encoder += [
                PreActBottleneck(channels, channels),
                PreActBottleneck(channels, channels),
                nn.MaxPool2d(2),
            ]
        self.encoder = nn.Sequential(*encoder)
        fc, width = [], channels * (resolution // 2**self.num_blocks) ** 2
        for dim in fc_dims:
            fc += [nn.Linear(width, dim), nn.LeakyReLU()]
            width = dim
        self.fc = nn.Sequential(*fc)
        self.pose = nn.Linear(width, NUM_MANO_ROTATIONS * 6)
        self.shape = nn.Linear(width, NUM_BETAS)
        # Start near the flat hand (identity rotations) and the mean shape.
        nn.init.xavier_uniform_(self.pose.weight, gain=0.01)
        with torch.no_grad():
            self.pose.bias.copy_(torch.tensor(_IDENTITY_6D).repeat(NUM_MANO_ROTATIONS))
        nn.init.xavier_uniform_(self.shape.weight, gain=0.01)
        nn.init.zeros_(self.shape.bias)
        self.hand_layer = hand_layer

    def forward(self, heatmaps, features):
        x = self.encoder(self.heatmap_conv(heatmaps) + self.feature_conv(features))
        x = self.fc(x.flatten(1))
        rotmats = rot6d_to_matrix(self.pose(x).view(-1, NUM_MANO_ROTATIONS, 6))
        mano_shape = self.shape(x)
        vertices, joints3d = self.hand_layer.forward_rotmats(rotmats, mano_shape)
        return {
            "rotmats": rotmats,
            "mano_shape": mano_shape,
            "vertices": vertices,
            "joints3d": joints3d,
        }


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_gradient(x, scale):
    """``x`` unchanged, its gradient scaled by ``scale`` (0: detached)."""
    if scale == 1:
        return x
    if scale == 0:
        return x.detach()
    return _ScaleGradient.apply(x, scale)


class HandHead(nn.Module):
    """The hand decoder: :class:`HeatmapHead` then :class:`MeshHead`; the mesh head's gradient
    into its inputs is scaled by MODEL.HANDOBJ.HAND.MESH_INPUT_GRADIENT.

    forward(features (N, C, R, R)) -> dict with the keys of both heads (``features`` dropped).
    """

    def __init__(self, cfg, in_channels):
        super().__init__()
        hand = cfg.MODEL.HANDOBJ.HAND
        resolution = cfg.MODEL.HANDOBJ.POOLER_RESOLUTION
        self.heatmap_head = HeatmapHead.from_hourglass_cfg(
            hand, in_channels, hand.NUM_JOINTS, resolution
        )
        self.mesh_head = MeshHead(
            hand.NUM_JOINTS,
            2 * hand.HOURGLASS_PLANES,
            hand.MESH_CHANNELS,
            resolution,
            hand.MESH_FC_DIMS,
            build_hand_layer(cfg),
        )
        self.mesh_input_gradient = hand.MESH_INPUT_GRADIENT

    def forward(self, features):
        out = self.heatmap_head(features)
        mesh_inputs = (out["heatmaps"][-1], out.pop("features"))
        out.update(
            self.mesh_head(*(scale_gradient(x, self.mesh_input_gradient) for x in mesh_inputs))
        )
        return out
