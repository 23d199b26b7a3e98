"""Hand decoders, registered in HAND_HEAD_REGISTRY and chosen by MODEL.HANDOBJ.HAND.NAME.

``HandHead`` (the paper's): hourglass heatmaps -> soft-argmax 2D joints (modeling/heatmaps.py),
and a residual encoder + FC layers -> 16 joint rotations (6D) + 10 shape betas -> MANO mesh.

A hand decoder has ``forward(features (N, C, R, R)) -> dict``, ``losses(pred, instances) ->
dict`` (``instances``: the training pairs, per image, with the ``gt_*`` fields of
docs/design.md "Mapper output") and ``inference(pred, hand_boxes (N, 4) px) -> dict`` of the
``pred_*`` hand fields of docs/design.md "Model output" (pixels).

Shapes, for N hand boxes, J = 21 joints and R x R ROI features (R = 32): 2D joints (N, J, 2) are
normalised to the hand box; MANO outputs: ``rotmats`` (N, 16, 3, 3) relative joint rotations
(global rotation first, OpenCV camera frame), ``mano_shape`` (N, 10), ``vertices`` (N, 778, 3)
and ``joints3d`` (N, J, 3) in metres, wrist at the origin.
"""

import torch
from detectron2.config import configurable
from detectron2.utils.registry import Registry
from torch import nn

from ..constants import NUM_JOINTS
from ..geometry import box_units_to_pixels, matrix_to_axis_angle, rot6d_to_matrix
from ..mano import build_hand_layer
from .heatmaps import HeatmapHead, PreActBottleneck, heatmap_confidence
from .losses import hand_losses, loss_weights

HAND_HEAD_REGISTRY = Registry("HAND_HEAD")
HAND_HEAD_REGISTRY.__doc__ = (
    """Hand decoders (classes, by name), built as ``head(cfg, in_channels)``."""
)

# Identity rotation in the 6D representation (first two columns of I).
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
NUM_MANO_ROTATIONS = 16
NUM_BETAS = 10

# MODEL.HANDOBJ.LOSS keys of the hand losses.
HAND_LOSS_KEYS = (
    "JOINTS2D",
    "HEATMAP",
    "VERTICES3D",
    "JOINTS3D",
    "MANO_POSE",
    "MANO_SHAPE",
    "PSEUDO_JOINTS3D",
    "SHAPE_REGULARIZER",
    "POSE_REGULARIZER",
)


def build_hand_head(cfg, in_channels):
    """The hand decoder named by MODEL.HANDOBJ.HAND.NAME."""
    return HAND_HEAD_REGISTRY.get(cfg.MODEL.HANDOBJ.HAND.NAME)(cfg, in_channels)


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


@HAND_HEAD_REGISTRY.register()
class HandHead(nn.Module):
    """The hand decoder: :class:`HeatmapHead` then :class:`MeshHead`; the mesh head's gradient
    into its inputs is scaled by ``mesh_input_gradient``.

    forward(features (N, C, R, R)) -> dict with the keys of both heads (``features`` dropped).
    """

    @configurable
    def __init__(
        self,
        *,
        heatmap_head,
        mesh_head,
        loss_weights,
        heatmap_sigma=1.0,
        mesh_input_gradient=1.0,
        confidence_radius=1.5,
    ):
        """
        Args:
            heatmap_head (HeatmapHead), mesh_head (MeshHead): the two stages.
            loss_weights (dict[str, float]): weights of :func:`losses.hand_losses`.
            heatmap_sigma (float): heatmap cells, the Gaussian of the heatmap loss.
            mesh_input_gradient (float): scale of the mesh head's gradient into its inputs.
            confidence_radius (float): heatmap cells, see ``heatmap_confidence``.
        """
        super().__init__()
        self.heatmap_head = heatmap_head
        self.mesh_head = mesh_head
        self.loss_weights = dict(loss_weights)
        self.heatmap_sigma = heatmap_sigma
        self.mesh_input_gradient = mesh_input_gradient
        self.confidence_radius = confidence_radius

    @classmethod
    def from_config(cls, cfg, in_channels):
        hand = cfg.MODEL.HANDOBJ.HAND
        resolution = cfg.MODEL.HANDOBJ.POOLER_RESOLUTION
        return {
            "heatmap_head": HeatmapHead(
                in_channels,
                NUM_JOINTS,
                hand.HOURGLASS_PLANES,
                hand.HOURGLASS_DEPTH,
                hand.HOURGLASS_STACKS,
                resolution,
            ),
            "mesh_head": MeshHead(
                NUM_JOINTS,
                2 * hand.HOURGLASS_PLANES,
                hand.MESH_CHANNELS,
                resolution,
                hand.MESH_FC_DIMS,
                build_hand_layer(cfg),
            ),
            "loss_weights": loss_weights(cfg, HAND_LOSS_KEYS),
            "heatmap_sigma": cfg.MODEL.HANDOBJ.LOSS.HEATMAP_SIGMA,
            "mesh_input_gradient": hand.MESH_INPUT_GRADIENT,
            "confidence_radius": hand.CONFIDENCE_RADIUS,
        }

    def forward(self, features):
        out = self.heatmap_head(features)
        mesh_inputs = (out["heatmaps"][-1], out.pop("features"))
        out.update(
            self.mesh_head(*(scale_gradient(x, self.mesh_input_gradient) for x in mesh_inputs))
        )
        return out

    def losses(self, pred, instances):
        """Losses of :func:`losses.hand_losses` against the pairs' ground truth."""
        return hand_losses(
            pred, instances, self.loss_weights, self.mesh_head.hand_layer, self.heatmap_sigma
        )

    def inference(self, pred, hand_boxes):
        """``pred_*`` hand fields (docs/design.md "Model output") for hand boxes (N, 4) px."""
        joints2d = pred["joints2d"][-1]
        return {
            "pred_joints2d": box_units_to_pixels(joints2d, hand_boxes),
            "pred_joints2d_conf": heatmap_confidence(
                pred["heatmaps"][-1], joints2d, self.confidence_radius
            ),
            "pred_mano_pose": matrix_to_axis_angle(pred["rotmats"]).flatten(1),
            "pred_mano_shape": pred["mano_shape"],
            "pred_joints3d": pred["joints3d"],
            "pred_vertices": pred["vertices"],
        }
