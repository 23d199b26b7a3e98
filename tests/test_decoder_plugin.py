"""A new object decoder plugs in through OBJECT_HEAD_REGISTRY and the config alone: a trivial
decoder, defined here, trains and feeds PnP with no other file touched."""

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from model_inputs import FIXTURE_MANO, make_sample
from torch import nn

from handobj_d2.engine import setup_cfg
from handobj_d2.geometry import box_units_to_pixels, pixels_to_box_units
from handobj_d2.mano import HandLayer
from handobj_d2.modeling import OBJECT_HEAD_REGISTRY, object_targets, single_candidates
from handobj_d2.modeling.losses import labelled_mean

# The 21 points of a 7 x 3 grid over the object box, in box units.
GRID = torch.stack(
    torch.meshgrid(torch.linspace(0.1, 0.9, 7), torch.linspace(0.2, 0.8, 3), indexing="xy"), -1
).reshape(21, 2)


@OBJECT_HEAD_REGISTRY.register()
class GridObjectHead(nn.Module):
    """Control points = the box's grid points + a learnable bias (21, 2), box units."""

    @configurable
    def __init__(self, *, loss_weight):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(21, 2))
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, in_channels):
        return {"loss_weight": cfg.MODEL.HANDOBJ.LOSS.OBJECT_POINTS}

    def forward(self, features):
        grid = GRID.to(features.device) + self.bias
        return {"points": grid.expand(features.shape[0], -1, -1)}

    def losses(self, pred, instances):
        _, points, weights = object_targets(instances)
        error = (pred["points"] - points).abs().sum(-1).mean(1)
        return {"loss_grid_points": self.loss_weight * labelled_mean(error, weights)}

    def inference(self, pred, object_boxes):
        points = box_units_to_pixels(pred["points"], object_boxes)
        return single_candidates(points, torch.ones(points.shape[:2], device=points.device))


def test_a_registered_decoder_trains_and_poses_the_object_with_pnp():
    cfg = setup_cfg(
        "configs/synthetic/handobj_tiny.yaml",
        ["MODEL.MANO.MODEL_PATH", FIXTURE_MANO, "MODEL.HANDOBJ.OBJECT.NAME", "GridObjectHead"],
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    head = model.roi_heads.object_head
    assert isinstance(head, GridObjectHead)
    sample = make_sample(HandLayer(FIXTURE_MANO), np.random.default_rng(0), 96, 96, "grid")
    pair = sample["hand_object"]

    model.train()
    with EventStorage(0):
        losses = model([sample])
    gt = pixels_to_box_units(pair.gt_control_points2d, pair.gt_object_boxes.tensor)
    expected = 10.0 * (GRID - gt[0]).abs().sum(-1).mean()  # LOSS.OBJECT_POINTS = 10
    torch.testing.assert_close(losses["loss_grid_points"], expected)
    losses["loss_grid_points"].backward()
    assert head.bias.grad.abs().sum() > 0

    # With the bias on the true control points, PnP recovers the object's pose.
    with torch.no_grad():
        head.bias.copy_(gt[0] - GRID)
    model.eval()
    # Inference reads the protocol's inputs (as the test-time mapper gives them), not gt_*.
    sample.update(
        hand_box=pair.gt_hand_boxes.tensor[0],
        object_box=pair.gt_object_boxes.tensor[0],
        control_points3d=pair.gt_control_points3d[0],
    )
    with torch.no_grad():
        (out,) = model([sample])
    ho = out["instances"]
    torch.testing.assert_close(ho.pred_control_points2d, pair.gt_control_points2d)
    assert ho.pred_object_pose_valid.tolist() == [True]
    torch.testing.assert_close(ho.pred_object_R, pair.gt_object_R, atol=1e-3, rtol=0)
    torch.testing.assert_close(ho.pred_object_t, pair.gt_object_t, atol=1e-4, rtol=0)
