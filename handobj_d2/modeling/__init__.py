"""The hand-object model. Importing this package registers HandObjectRCNN (META_ARCH_REGISTRY),
HandObjectROIHeads (ROI_HEADS_REGISTRY), the hand decoders (HAND_HEAD_REGISTRY), the object
decoders (OBJECT_HEAD_REGISTRY), the contextual-reasoning modules (CONTEXTUAL_REASONING_REGISTRY),
the truncated ResNet-FPN backbone and the authors' released backbone (BACKBONE_REGISTRY)."""

from .backbone import build_truncated_resnet_fpn_backbone
from .contextual_reasoning import CONTEXTUAL_REASONING_REGISTRY, build_contextual_reasoning
from .hand_head import HAND_HEAD_REGISTRY, HandHead, build_hand_head
from .meta_arch import HandObjectRCNN
from .object_head import (
    OBJECT_HEAD_REGISTRY,
    HeatmapObjectHead,
    VotingObjectHead,
    build_object_head,
    object_targets,
    single_candidates,
)
from .pnp import control_point_estimates, object_poses, solve_pnp, vote_control_points
from .released_backbone import build_released_resnet_fpn_backbone
from .roi_heads import HandObjectROIHeads, hand_object_detections, select_hand_object_pair
from .test_time_augmentation import HandObjectRCNNWithTTA
