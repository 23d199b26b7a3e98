"""ROI heads: Detectron2's two-class (hand, object) box head plus the hand-object pose branch.

The pose branch works on *pairs*: per image an ``Instances`` whose rows are hand-object pairs
with ``hand_boxes`` and ``object_boxes`` (Boxes, model-input pixels). It pools 32x32 ROIAlign
features from P2 for the hand box, the object box and their intersection (zero where the
boxes do not intersect), runs contextual reasoning (object query, intersection key), the hand
decoder and the object decoder.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, Instances, pairwise_iou

from ..constants import HAND_CLASS, OBJECT_CLASS
from ..geometry import (
    box_units_to_pixels,
    intersection_box,
    matrix_to_axis_angle,
    pixels_to_box_units,
)
from .contextual_reasoning import build_contextual_reasoning
from .hand_head import HandHead, heatmap_confidence
from .losses import hand_losses
from .object_head import build_object_head
from .pnp import control_point_estimates, solve_pnp


def select_hand_object_pair(detections, score_thresh):
    """The pose heads' pair from one image's detections: the best-scoring hand and the object
    that overlaps it most (largest IoU, ties broken by score). Returns Instances with
    ``hand_boxes``, ``hand_scores``, ``object_boxes``, ``object_scores``: one row, or none
    when no hand or no object scores at least ``score_thresh``."""
    keep = detections.scores >= score_thresh
    hands = detections[keep & (detections.pred_classes == HAND_CLASS)]
    objects = detections[keep & (detections.pred_classes == OBJECT_CLASS)]
    if len(hands) == 0 or len(objects) == 0:
        hand, obj = hands[:0], objects[:0]
    else:
        hand = hands[hands.scores.argmax().view(1)]
        iou = pairwise_iou(hand.pred_boxes, objects.pred_boxes)[0]
        by_score = objects.scores.argsort(descending=True)
        # argmax returns the first maximum: among equal IoUs the highest-scoring object.
        obj = objects[by_score[iou[by_score].argmax()].view(1)]
    return Instances(
        detections.image_size,
        hand_boxes=hand.pred_boxes,
        hand_scores=hand.scores,
        object_boxes=obj.pred_boxes,
        object_scores=obj.scores,
    )


@ROI_HEADS_REGISTRY.register()
class HandObjectROIHeads(StandardROIHeads):
    """StandardROIHeads (box head for hand and object) + the hand-object pose branch
    (:meth:`forward_pose`)."""

    @configurable
    def __init__(
        self,
        *,
        pose_in_feature,
        pose_pooler,
        contextual_reasoning,
        hand_head,
        object_head,
        loss_weights,
        joint_confidence_radius,
        min_pnp_points,
        pnp_reprojection_error,
        pnp_iterations,
        **kwargs,
    ):
        """
        Args:
            pose_in_feature (str): feature map the pose branch pools from ("p2").
            pose_pooler (ROIPooler): R x R pooler on that map.
            contextual_reasoning, hand_head, object_head (nn.Module): the pose heads.
            loss_weights (CfgNode): MODEL.HANDOBJ.LOSS.
            joint_confidence_radius (float): heatmap cells, see ``heatmap_confidence``.
            min_pnp_points, pnp_reprojection_error (pixels), pnp_iterations: PnP-RANSAC
                settings.
            kwargs: StandardROIHeads arguments.
        """
        super().__init__(**kwargs)
        self.pose_in_feature = pose_in_feature
        self.pose_pooler = pose_pooler
        self.contextual_reasoning = contextual_reasoning
        self.hand_head = hand_head
        self.object_head = object_head
        self.loss_weights = loss_weights
        self.joint_confidence_radius = joint_confidence_radius
        self.min_pnp_points = min_pnp_points
        self.pnp_reprojection_error = pnp_reprojection_error
        self.pnp_iterations = pnp_iterations

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(cls._init_pose_heads(cfg, input_shape))
        return ret

    @classmethod
    def _init_pose_heads(cls, cfg, input_shape):
        handobj = cfg.MODEL.HANDOBJ
        if handobj.IN_FEATURE not in input_shape:
            raise ValueError(
                f"MODEL.HANDOBJ.IN_FEATURE={handobj.IN_FEATURE!r} is not a backbone output "
                f"({sorted(input_shape)})"
            )
        shape = input_shape[handobj.IN_FEATURE]
        return {
            "pose_in_feature": handobj.IN_FEATURE,
            "pose_pooler": ROIPooler(
                output_size=handobj.POOLER_RESOLUTION,
                scales=(1.0 / shape.stride,),
                sampling_ratio=handobj.POOLER_SAMPLING_RATIO,
                pooler_type=handobj.POOLER_TYPE,
            ),
            "contextual_reasoning": build_contextual_reasoning(cfg, shape.channels),
            "hand_head": HandHead(cfg, shape.channels),
            "object_head": build_object_head(cfg, shape.channels),
            "loss_weights": handobj.LOSS,
            "joint_confidence_radius": handobj.HAND.CONFIDENCE_RADIUS,
            "min_pnp_points": handobj.OBJECT.MIN_PNP_POINTS,
            "pnp_reprojection_error": handobj.OBJECT.PNP_REPROJ_ERROR,
            "pnp_iterations": handobj.OBJECT.PNP_ITERATIONS,
        }

    def pool_pair_features(self, features, pairs):
        """ROIAlign features (K, C, R, R) of the hand boxes, object boxes and intersections of
        all pairs (image order); intersection features are zero where the boxes do not
        intersect or where a pair lacks its hand or object (``has_hand`` / ``has_object``)."""
        x = [features[self.pose_in_feature]]
        hand_boxes = [p.hand_boxes for p in pairs]
        object_boxes = [p.object_boxes for p in pairs]
        hand_tensor = cat([b.tensor for b in hand_boxes])
        inter, valid = intersection_box(hand_tensor, cat([b.tensor for b in object_boxes]))
        if pairs[0].has("has_hand"):  # training pairs may lack a hand or an object
            valid = valid & cat([p.has_hand & p.has_object for p in pairs])
        # Empty intersections pool a valid stand-in box; their features are zeroed below.
        inter = torch.where(valid[:, None], inter, hand_tensor)
        inter_boxes = list(map(Boxes, inter.split([len(p) for p in pairs])))
        hand = self.pose_pooler(x, hand_boxes)
        obj = self.pose_pooler(x, object_boxes)
        inter = self.pose_pooler(x, inter_boxes) * valid[:, None, None, None]
        return hand, obj, inter

    def forward_pose(self, features, pairs):
        """The pose branch.

        Args:
            features (dict[str, Tensor]): backbone features.
            pairs (list[Instances]): per image, hand-object pairs with ``hand_boxes`` and
                ``object_boxes``. Training: also the ground truth (see ``HandObjectRCNN``).
                Inference: optionally ``camera_K`` (K, 3, 3), ``control_points3d`` (K, P, 3)
                and ``has_pnp_inputs`` (K,) for the object pose.

        Returns:
            Training: dict of losses. Inference: ``pairs`` with the predictions added (2D in
            model-input pixels; fields listed in docs/design.md "Model output").
        """
        hand_features, object_features, inter_features = self.pool_pair_features(features, pairs)
        hand = self.hand_head(hand_features)
        obj = self.object_head(self.contextual_reasoning(object_features, inter_features))
        if self.training:
            return self._pose_losses(hand, obj, pairs)
        return self._pose_predictions(hand, obj, pairs)

    def _pose_losses(self, hand, obj, pairs):
        hand_boxes = cat([p.hand_boxes.tensor for p in pairs])
        object_boxes = cat([p.object_boxes.tensor for p in pairs])
        weights = cat([p.loss_weight for p in pairs])
        gt = {
            "joints2d": pixels_to_box_units(cat([p.gt_joints2d for p in pairs]), hand_boxes),
            "joints3d": cat([p.gt_joints3d for p in pairs]),
            "mano_pose": cat([p.gt_mano_pose for p in pairs]),
            "mano_shape": cat([p.gt_mano_shape for p in pairs]),
            "has_hand": cat([p.has_hand for p in pairs]),
            "has_joints2d": cat([p.gt_has_joints2d for p in pairs]),
            "has_joints3d": cat([p.gt_has_joints3d for p in pairs]),
            "has_mano": cat([p.gt_has_mano for p in pairs]),
        }
        has_pose = cat([p.has_object & p.gt_has_object_pose for p in pairs])
        gt_points = pixels_to_box_units(cat([p.gt_control_points2d for p in pairs]), object_boxes)
        losses = hand_losses(
            hand, gt, weights, self.loss_weights, self.hand_head.mesh_head.hand_layer
        )
        losses.update(
            self.object_head.losses(obj, pairs, gt_points, weights * has_pose, self.loss_weights)
        )
        return losses

    def _pose_predictions(self, hand, obj, pairs):
        hand_boxes = cat([p.hand_boxes.tensor for p in pairs])
        object_boxes = cat([p.object_boxes.tensor for p in pairs])
        joints2d = hand["joints2d"][-1]
        votes, vote_confidence, vote_valid = self.object_head.votes(obj, object_boxes)
        control_points2d, control_points_conf = control_point_estimates(
            votes, vote_confidence, vote_valid
        )
        predictions = {
            "joints2d": box_units_to_pixels(joints2d, hand_boxes),
            "joints2d_conf": heatmap_confidence(
                hand["heatmaps"][-1], joints2d, self.joint_confidence_radius
            ),
            "mano_pose": matrix_to_axis_angle(hand["rotmats"]).flatten(1),
            "mano_shape": hand["mano_shape"],
            "joints3d": hand["joints3d"],
            "vertices": hand["vertices"],
            "control_points2d": control_points2d,
            "control_points_conf": control_points_conf,
        }
        predictions.update(self._object_poses(votes, vote_valid, pairs))
        lengths = [len(p) for p in pairs]
        for name, value in predictions.items():
            for p, part in zip(pairs, value.split(lengths)):
                p.set(name, part)
        return pairs

    def _object_poses(self, votes, vote_valid, pairs):
        """PnP-RANSAC per pair with ``camera_K`` and ``control_points3d``; failed poses and
        pairs without them get R = I, t = 0 and ``object_pose_valid`` False."""
        k = votes.shape[0]
        device, dtype = votes.device, votes.dtype
        rotations = torch.eye(3, dtype=dtype, device=device).repeat(k, 1, 1)
        translations = votes.new_zeros(k, 3)
        ok = torch.zeros(k, dtype=torch.bool, device=device)
        if k and all(p.has("has_pnp_inputs") for p in pairs):
            usable = cat([p.has_pnp_inputs for p in pairs])
            if usable.any():
                R, t, solved = solve_pnp(
                    votes[usable],
                    vote_valid[usable],
                    cat([p.control_points3d for p in pairs])[usable],
                    cat([p.camera_K for p in pairs])[usable],
                    self.min_pnp_points,
                    self.pnp_reprojection_error,
                    self.pnp_iterations,
                )
                rotations[usable] = torch.as_tensor(R, dtype=dtype, device=device)
                translations[usable] = torch.as_tensor(t, dtype=dtype, device=device)
                ok[usable] = torch.as_tensor(solved, device=device)
        return {"object_R": rotations, "object_t": translations, "object_pose_valid": ok}
