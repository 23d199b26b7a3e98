"""ResNet-FPN backbone that may stop before res5.

Detectron2's ``build_resnet_fpn_backbone`` always max-pools "p5" into the extra level, so its
``RESNETS.OUT_FEATURES`` must reach res5. This builder stops at the last stage that
``RESNETS.OUT_FEATURES`` names (configs/synthetic/handobj_tiny_fast.yaml stops after res4;
docs/demo.md, "The fast tiny model").
"""

import math

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import build_resnet_backbone


@BACKBONE_REGISTRY.register()
def build_truncated_resnet_fpn_backbone(cfg, input_shape):
    """Detectron2's ResNet-FPN whose ResNet stops at the deepest of ``RESNETS.OUT_FEATURES``
    (the stages after it are not built) and whose extra level is the max-pooled deepest FPN
    output: res2-res4 give p2-p4 plus p5 (stride 32). With res5 it equals
    ``build_resnet_fpn_backbone``."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    in_features = cfg.MODEL.FPN.IN_FEATURES
    deepest = bottom_up.output_shape()[in_features[-1]].stride
    top_block = LastLevelMaxPool()
    top_block.in_feature = f"p{int(math.log2(deepest))}"
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
