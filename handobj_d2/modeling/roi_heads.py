"""ROI heads: Detectron2's two-class (hand, object) box head plus the hand-object pose branch.

The pose branch works on *pairs*: per image an ``Instances`` whose rows are hand-object pairs,
with ``gt_hand_boxes`` and ``gt_object_boxes`` in training (the mapper's ``hand_object``) and
``pred_hand_boxes`` and ``pred_object_boxes`` at inference (Boxes, model-input pixels). It pools 32x32 ROIAlign
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
from ..geometry import intersection_box
from .contextual_reasoning import build_contextual_reasoning
from .hand_head import build_hand_head
from .object_head import build_object_head
from .pnp import solve_pnp


def hand_object_detections(image_size, hand_box, object_box, hand_score=1.0, object_score=1.0):
    """Detections (``detected_instances`` of ``HandObjectRCNN.inference``) of one hand box and
    one object box, each [x1, y1, x2, y2] in model-input pixels."""
    boxes = torch.as_tensor([list(map(float, hand_box)), list(map(float, object_box))])
    return Instances(
        image_size,
        pred_boxes=Boxes(boxes),
        scores=torch.tensor([float(hand_score), float(object_score)]),
        pred_classes=torch.tensor([HAND_CLASS, OBJECT_CLASS]),
    )


def select_hand_object_pair(detections, score_thresh=0.0):
    """The pose heads' pair from one image's detections: the best-scoring hand and the object
    that overlaps it most (largest IoU, ties broken by score). Returns Instances with
    ``pred_hand_boxes``, ``hand_scores``, ``pred_object_boxes``, ``object_scores``: one row, or
    none when no hand or no object scores at least ``score_thresh``."""
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
        pred_hand_boxes=hand.pred_boxes,
        hand_scores=hand.scores,
        pred_object_boxes=obj.pred_boxes,
        object_scores=obj.scores,
    )


@ROI_HEADS_REGISTRY.register()
class HandObjectROIHeads(StandardROIHeads):
    """StandardROIHeads (box head for hand and object) + the hand-object pose branch, run from
    :meth:`forward` (training: on the ground-truth pairs) and :meth:`forward_with_given_boxes`
    (inference: on the pair selected from the detections), as StandardROIHeads runs its mask
    and keypoint branches."""

    @configurable
    def __init__(
        self,
        *,
        pose_in_feature,
        pose_pooler,
        contextual_reasoning,
        hand_head,
        object_head,
        min_pnp_points,
        pnp_reprojection_error,
        pnp_iterations,
        **kwargs,
    ):
        """
        Args:
            pose_in_feature (str): feature map the pose branch pools from ("p2").
            pose_pooler (ROIPooler): R x R pooler on that map.
            contextual_reasoning, hand_head, object_head (nn.Module): the pose heads (hand and
                object decoder interfaces in modeling/hand_head.py and object_head.py).
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
            "hand_head": build_hand_head(cfg, shape.channels),
            "object_head": build_object_head(cfg, shape.channels),
            "min_pnp_points": handobj.OBJECT.MIN_PNP_POINTS,
            "pnp_reprojection_error": handobj.OBJECT.PNP_REPROJ_ERROR,
            "pnp_iterations": handobj.OBJECT.PNP_ITERATIONS,
        }

    def forward(self, images, features, proposals, targets=None, hand_object=None, pnp_inputs=None):
        """
        Args:
            images, features, proposals, targets: as StandardROIHeads; ``proposals`` None
                in training skips the box head (MODEL.HANDOBJ.DETECTOR_ON False).
            hand_object (list[Instances]): training: per image the ground-truth pairs
                (docs/design.md "Mapper output").
            pnp_inputs: inference: see :meth:`forward_with_given_boxes`.

        Returns:
            Training: (proposals, dict of losses). Inference: (the per-image dicts of
            :meth:`forward_with_given_boxes`, {}).
        """
        del images
        if not self.training:
            detections = self._forward_box(features, proposals)
            return self.forward_with_given_boxes(features, detections, pnp_inputs), {}
        losses = {}
        if proposals is not None:
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses.update(self._forward_box(features, proposals))
        losses.update(self._forward_pose(features, hand_object))
        return proposals, losses

    def forward_with_given_boxes(self, features, instances, pnp_inputs=None):
        """The pose branch on the pair :func:`select_hand_object_pair` picks from each image's
        detections.

        Args:
            features (dict[str, Tensor]): backbone features.
            instances (list[Instances]): per image detections with ``pred_boxes``, ``scores``,
                ``pred_classes`` (model-input pixels).
            pnp_inputs (list): per image None or (camera_K (3, 3), control_points3d (P, 3) m)
                for the object pose.

        Returns:
            list[dict]: per image ``instances`` (the detections) and ``hand_object`` (the pair
            with the ``pred_*`` fields of docs/design.md "Model output", model-input pixels).
        """
        pairs = [select_hand_object_pair(x) for x in instances]
        hand, obj = self._pose_outputs(
            features, [p.pred_hand_boxes for p in pairs], [p.pred_object_boxes for p in pairs]
        )
        fields = self.hand_head.inference(hand, cat([p.pred_hand_boxes.tensor for p in pairs]))
        object_fields, (points, valid) = self.object_head.inference(
            obj, cat([p.pred_object_boxes.tensor for p in pairs])
        )
        fields.update(object_fields)
        lengths = [len(p) for p in pairs]
        fields.update(self._object_poses(points, valid, lengths, pnp_inputs))
        for name, value in fields.items():
            for pair, part in zip(pairs, value.split(lengths)):
                pair.set(name, part)
        return [{"instances": d, "hand_object": p} for d, p in zip(instances, pairs)]

    def _forward_pose(self, features, instances):
        """Pose losses of the ground-truth pairs (``gt_*`` fields, docs/design.md)."""
        hand, obj = self._pose_outputs(
            features,
            [x.gt_hand_boxes for x in instances],
            [x.gt_object_boxes for x in instances],
            [x.gt_has_hand & x.gt_has_object for x in instances],
        )
        losses = self.hand_head.losses(hand, instances)
        losses.update(self.object_head.losses(obj, instances))
        return losses

    def _pose_outputs(self, features, hand_boxes, object_boxes, both_present=None):
        """Hand and object decoder outputs of pairs with these boxes (per image Boxes)."""
        hand_features, object_features, inter_features = self.pool_pair_features(
            features, hand_boxes, object_boxes, both_present
        )
        hand = self.hand_head(hand_features)
        obj = self.object_head(self.contextual_reasoning(object_features, inter_features))
        return hand, obj

    def pool_pair_features(self, features, hand_boxes, object_boxes, both_present=None):
        """ROIAlign features (K, C, R, R) of the hand boxes, object boxes (per image Boxes) and
        their intersections (image order); intersection features are zero where the boxes do not
        intersect or where ``both_present`` (per image (k,) bool: the pair has both a hand and
        an object) is False."""
        x = [features[self.pose_in_feature]]
        hand_tensor = cat([b.tensor for b in hand_boxes])
        inter, valid = intersection_box(hand_tensor, cat([b.tensor for b in object_boxes]))
        if both_present is not None:
            valid = valid & cat(both_present)
        # Empty intersections pool a valid stand-in box; their features are zeroed below.
        inter = torch.where(valid[:, None], inter, hand_tensor)
        inter_boxes = list(map(Boxes, inter.split([len(b) for b in hand_boxes])))
        hand = self.pose_pooler(x, hand_boxes)
        obj = self.pose_pooler(x, object_boxes)
        inter = self.pose_pooler(x, inter_boxes) * valid[:, None, None, None]
        return hand, obj, inter

    def _object_poses(self, points, valid, lengths, pnp_inputs):
        """PnP-RANSAC per pair on the object decoder's candidates ``points`` (K, P, V, 2) px /
        ``valid`` (K, P, V) for the images with ``pnp_inputs``; failed poses and the other pairs
        get R = I, t = 0 and ``pred_object_pose_valid`` False."""
        k = points.shape[0]
        device, dtype = points.device, points.dtype
        rotations = torch.eye(3, dtype=dtype, device=device).repeat(k, 1, 1)
        translations = points.new_zeros(k, 3)
        ok = torch.zeros(k, dtype=torch.bool, device=device)
        rows, camera_K, points3d = [], [], []
        start = 0
        for length, inputs in zip(lengths, pnp_inputs or [None] * len(lengths)):
            if inputs is not None:
                rows += range(start, start + length)
                camera_K += [inputs[0]] * length
                points3d += [inputs[1]] * length
            start += length
        if rows:
            R, t, solved = solve_pnp(
                points[rows],
                valid[rows],
                torch.stack(points3d),
                torch.stack(camera_K),
                self.min_pnp_points,
                self.pnp_reprojection_error,
                self.pnp_iterations,
            )
            rotations[rows] = torch.as_tensor(R, dtype=dtype, device=device)
            translations[rows] = torch.as_tensor(t, dtype=dtype, device=device)
            ok[rows] = torch.as_tensor(solved, device=device)
        return {
            "pred_object_R": rotations,
            "pred_object_t": translations,
            "pred_object_pose_valid": ok,
        }
