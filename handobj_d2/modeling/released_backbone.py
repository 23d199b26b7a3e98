"""The authors' released backbone (github.com/stevenlsw/Semi-Hand-Object, ``networks/backbone.py``)
as a Detectron2 backbone: ``build_released_resnet_fpn_backbone`` in BACKBONE_REGISTRY.

It differs from Detectron2's R50-FPN in three ways, all needed to run the released weights:

* every ReLU of the ResNet is a LeakyReLU (negative slope 0.01);
* the stride of a downsampling bottleneck sits in its 3x3 conv (torchvision's placement,
  ``MODEL.RESNETS.STRIDE_IN_1X1 False``);
* the FPN upsamples bilinearly (``align_corners=False``) to the lateral map's size, smooths
  P2-P4 with a 3x3 conv and leaves P5 (the 1x1 lateral of res5) unsmoothed; there is no P6.

Outputs ``p2`` .. ``p5`` (strides 4 .. 32, ``MODEL.FPN.OUT_CHANNELS`` channels). Widths follow
``MODEL.RESNETS.STEM_OUT_CHANNELS``, ``RES2_OUT_CHANNELS`` and ``WIDTH_PER_GROUP`` (released:
64, 256, 64), so a narrow copy of the same structure can be built for tests.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from torch import nn
from torch.nn import functional as F

NEGATIVE_SLOPE = 0.01  # torch.nn.LeakyReLU's default, used throughout the released ResNet


class LeakyStem(BasicStem):
    """7x7 stride-2 conv + norm, LeakyReLU, 3x3 stride-2 max-pool (stride 4)."""

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE, inplace=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class LeakyBottleneckBlock(BottleneckBlock):
    """Detectron2's bottleneck (1x1, 3x3, 1x1 convs with norms, projection shortcut when the
    shape changes) with LeakyReLU activations. The activations and the residual sum work in
    place on the norms' fresh outputs (whose backward does not read them), as the released
    network does."""

    def forward(self, x):
        out = F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE, inplace=True)
        out = F.leaky_relu(self.conv2(out), NEGATIVE_SLOPE, inplace=True)
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.leaky_relu(out, NEGATIVE_SLOPE, inplace=True)


class ReleasedFPN(Backbone):
    """Top-down pathway of the released FPN over a bottom-up network with ``res2`` .. ``res5``.

    forward(images (N, 3, H, W)) -> dict ``p2`` .. ``p5`` of (N, C, H / s, W / s).
    """

    in_features = ("res2", "res3", "res4", "res5")
    smoothed_levels = (2, 3, 4)

    def __init__(self, bottom_up, out_channels):
        super().__init__()
        self.bottom_up = bottom_up
        shapes = bottom_up.output_shape()
        for name in self.in_features:
            level = int(name[-1])
            self.add_module(
                f"fpn_lateral{level}", nn.Conv2d(shapes[name].channels, out_channels, 1)
            )
            if level in self.smoothed_levels:
                self.add_module(
                    f"fpn_output{level}", nn.Conv2d(out_channels, out_channels, 3, padding=1)
                )
        self._out_feature_channels = {f"p{n[-1]}": out_channels for n in self.in_features}
        self._out_feature_strides = {f"p{n[-1]}": shapes[n].stride for n in self.in_features}
        self._out_features = list(self._out_feature_strides)

    @property
    def size_divisibility(self):
        return self._out_feature_strides["p5"]

    def forward(self, x):
        bottom_up = self.bottom_up(x)
        top = self.fpn_lateral5(bottom_up["res5"])
        outputs = {"p5": top}
        for level in (4, 3, 2):
            lateral = getattr(self, f"fpn_lateral{level}")(bottom_up[f"res{level}"])
            top = lateral + F.interpolate(
                top, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            outputs[f"p{level}"] = getattr(self, f"fpn_output{level}")(top)
        return {name: outputs[name] for name in self._out_features}

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


def build_released_resnet(cfg, input_shape):
    """The released ResNet-50 (LeakyReLU, stride in the 3x3 conv) with ``res2`` .. ``res5``."""
    resnets = cfg.MODEL.RESNETS
    if resnets.DEPTH != 50 or resnets.NUM_GROUPS != 1 or resnets.RES5_DILATION != 1:
        raise ValueError(
            "build_released_resnet_fpn_backbone is the released ResNet-50: it needs "
            "MODEL.RESNETS.DEPTH 50, NUM_GROUPS 1 and RES5_DILATION 1, got "
            f"{resnets.DEPTH}, {resnets.NUM_GROUPS}, {resnets.RES5_DILATION}"
        )
    if resnets.STRIDE_IN_1X1:
        raise ValueError(
            "build_released_resnet_fpn_backbone puts the stride in the 3x3 conv as released: "
            "set MODEL.RESNETS.STRIDE_IN_1X1 False"
        )
    stem = LeakyStem(input_shape.channels, resnets.STEM_OUT_CHANNELS, norm=resnets.NORM)
    in_channels, out_channels = resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS
    bottleneck_channels = resnets.WIDTH_PER_GROUP
    stages = []
    for index, num_blocks in enumerate((3, 4, 6, 3)):
        stride = 1 if index == 0 else 2
        stages.append(
            ResNet.make_stage(
                LeakyBottleneckBlock,
                num_blocks,
                stride_per_block=[stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                bottleneck_channels=bottleneck_channels,
                norm=resnets.NORM,
                stride_in_1x1=False,
            )
        )
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(
        stem,
        stages,
        out_features=list(ReleasedFPN.in_features),
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


@BACKBONE_REGISTRY.register()
def build_released_resnet_fpn_backbone(cfg, input_shape):
    """The released R50-FPN (module docstring); ``p2`` .. ``p5`` of MODEL.FPN.OUT_CHANNELS."""
    return ReleasedFPN(build_released_resnet(cfg, input_shape), cfg.MODEL.FPN.OUT_CHANNELS)
