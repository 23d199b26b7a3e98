"""ROI heads: Detectron2's two-class (hand, object) box head plus the hand-object pose branch.

The pose branch works on *pairs*: per image an ``Instances`` whose rows are hand-object pairs,
with ``gt_hand_boxes`` and ``gt_object_boxes`` in training (the mapper's ``hand_object``); at
inference the rows are hand detections (``pred_boxes``) with their ``pred_object_boxes`` and
``pred_has_object`` (Boxes, model-input pixels), and the pose outputs become fields of those
Instances (docs/design.md "Model output"). It pools 32x32 ROIAlign features from P2 for the
hand box, the object box and their intersection (zero where the boxes do not intersect), runs
contextual reasoning (object query, intersection key), the hand decoder and the object
decoder; a hand without an object skips the last two.
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


def hand_object_detections(image_size, hand_box, object_box=None, hand_score=1.0, object_score=1.0):
    """Detections (``detected_instances`` of ``HandObjectRCNN.inference``) of one hand box and
    optionally one object box (None: a hand without an object), each [x1, y1, x2, y2] in
    model-input pixels."""
    boxes = [list(map(float, hand_box))]
    scores, classes = [float(hand_score)], [HAND_CLASS]
    if object_box is not None:
        boxes.append(list(map(float, object_box)))
        scores.append(float(object_score))
        classes.append(OBJECT_CLASS)
    return Instances(
        image_size,
        pred_boxes=Boxes(torch.as_tensor(boxes, dtype=torch.float32)),
        scores=torch.tensor(scores),
        pred_classes=torch.tensor(classes),
    )


def select_hand_object_pair(detections, score_thresh=0.0):
    """The pose branch's pair from one image's detections: the best-scoring hand (the row's
    ``pred_boxes``, ``scores``, ``pred_classes``) and the object that overlaps it most (largest
    IoU, ties broken by score) as ``pred_object_boxes``, ``object_scores``, with
    ``pred_has_object`` False (object box NaN, score 0) when no object scores at least
    ``score_thresh``. One row, or none when no hand does."""
    keep = detections.scores >= score_thresh
    hands = detections[keep & (detections.pred_classes == HAND_CLASS)]
    objects = detections[keep & (detections.pred_classes == OBJECT_CLASS)]
    if len(hands) == 0:
        hand = hands[:0]
    else:
        hand = hands[hands.scores.argmax().view(1)]
    if len(hand) == 0 or len(objects) == 0:
        object_boxes = hand.pred_boxes.tensor.new_full((len(hand), 4), float("nan"))
        object_scores = hand.scores.new_zeros(len(hand))
        has_object = torch.zeros(len(hand), dtype=torch.bool, device=hand.scores.device)
    else:
        iou = pairwise_iou(hand.pred_boxes, objects.pred_boxes)[0]
        by_score = objects.scores.argsort(descending=True)
        # argmax returns the first maximum: among equal IoUs the highest-scoring object.
        obj = objects[by_score[iou[by_score].argmax()].view(1)]
        object_boxes, object_scores = obj.pred_boxes.tensor, obj.scores
        has_object = torch.ones(1, dtype=torch.bool, device=hand.scores.device)
    return Instances(
        detections.image_size,
        pred_boxes=hand.pred_boxes,
        scores=hand.scores,
        pred_classes=hand.pred_classes,
        pred_has_object=has_object,
        pred_object_boxes=Boxes(object_boxes),
        object_scores=object_scores,
    )


@ROI_HEADS_REGISTRY.register()
class HandObjectROIHeads(StandardROIHeads):
    """StandardROIHeads (box head for hand and object) + the hand-object pose branch, run from
    :meth:`forward` (training: on the ground-truth pairs) and :meth:`forward_with_given_boxes`
    (inference: on the pair selected from the detections), as StandardROIHeads runs its mask
    and keypoint branches; ``pose_on`` False (MODEL.HANDOBJ.POSE_ON) leaves the detector alone,
    as ``mask_on`` does."""

    @configurable
    def __init__(
        self,
        *,
        pose_in_feature,
        pose_pooler,
        contextual_reasoning,
        hand_head,
        object_head,
        pose_on=True,
        **kwargs,
    ):
        """
        Args:
            pose_in_feature (str): feature map the pose branch pools from ("p2").
            pose_pooler (ROIPooler): R x R pooler on that map.
            contextual_reasoning, hand_head, object_head (nn.Module): the pose heads (hand and
                object decoder interfaces in modeling/hand_head.py and object_head.py).
            pose_on (bool): run the pose branch (training losses, inference fields).
            kwargs: StandardROIHeads arguments.
        """
        super().__init__(**kwargs)
        self.pose_in_feature = pose_in_feature
        self.pose_pooler = pose_pooler
        self.contextual_reasoning = contextual_reasoning
        self.hand_head = hand_head
        self.object_head = object_head
        self.pose_on = pose_on

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
            "pose_on": handobj.POSE_ON,
        }

    def forward(self, images, features, proposals, targets=None, hand_object=None):
        """
        Args:
            images, features, proposals, targets: as StandardROIHeads; ``proposals`` None
                in training skips the box head (MODEL.HANDOBJ.DETECTOR_ON False).
            hand_object (list[Instances]): training: per image the ground-truth pairs
                (docs/design.md "Mapper output").

        Returns:
            Training: (proposals, dict of losses). Inference: (per image the Instances of
            :meth:`forward_with_given_boxes` on the detections, {}).
        """
        del images
        if not self.training:
            return self.forward_with_given_boxes(features, self.detect(features, proposals)), {}
        losses = {}
        if proposals is not None:
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses.update(self._forward_box(features, proposals))
        if self.pose_on:
            losses.update(self._forward_pose(features, hand_object))
        return proposals, losses

    def detect(self, features, proposals):
        """Inference of the box head: per image Instances (pred_boxes, scores, pred_classes) in
        model-input pixels, above MODEL.ROI_HEADS.SCORE_THRESH_TEST, after NMS."""
        assert not self.training
        return self._forward_box(features, proposals)

    def forward_with_given_boxes(self, features, instances):
        """The pose branch on the pair :func:`select_hand_object_pair` picks from each image's
        detections.

        Args:
            features (dict[str, Tensor]): backbone features.
            instances (list[Instances]): per image detections with ``pred_boxes``, ``scores``,
                ``pred_classes`` (model-input pixels).

        Returns:
            list[Instances]: ``instances`` unchanged when ``pose_on`` is False; else per image
            one row per pair, the hand being the row's detection, with the fields of
            docs/design.md "Model output" in model-input pixels (no object pose: that is
            post-processing, ``pnp.object_poses``).
        """
        assert not self.training
        if not self.pose_on:
            return instances
        pairs = [select_hand_object_pair(x) for x in instances]
        x = [features[self.pose_in_feature]]
        hand_boxes = [p.pred_boxes for p in pairs]
        fields = self.hand_head.inference(
            self.hand_head(self.pose_pooler(x, hand_boxes)), cat([b.tensor for b in hand_boxes])
        )
        fields.update(self._object_inference(features, pairs))
        lengths = [len(p) for p in pairs]
        for name, value in fields.items():
            for pair, part in zip(pairs, value.split(lengths)):
                pair.set(name, part)
        return pairs

    def _object_inference(self, features, pairs):
        """Object fields of the pairs: contextual reasoning and the object decoder run on the
        rows with an object; hand-only rows get NaN points, zero confidences and no valid vote.
        ``pred_control_point_votes`` (K, P, V, 2) px and ``pred_control_point_votes_valid``
        (K, P, V) are the decoder's candidates for PnP."""
        present = [p.pred_has_object for p in pairs]
        hand = [Boxes(p.pred_boxes.tensor[m]) for p, m in zip(pairs, present)]
        obj = [Boxes(p.pred_object_boxes.tensor[m]) for p, m in zip(pairs, present)]
        _, object_features, inter_features = self.pool_pair_features(
            features, hand, obj, pool_hands=False
        )
        pred = self.object_head(self.contextual_reasoning(object_features, inter_features))
        fields, (votes, valid) = self.object_head.inference(pred, cat([b.tensor for b in obj]))
        fields.update(pred_control_point_votes=votes, pred_control_point_votes_valid=valid)
        present = cat(present)
        out = {}
        for name, value in fields.items():
            if value.dtype == torch.bool or name.endswith("_conf"):
                full = value.new_zeros((len(present),) + value.shape[1:])
            else:
                full = value.new_full((len(present),) + value.shape[1:], float("nan"))
            full[present] = value
            out[name] = full
        return out

    def _forward_pose(self, features, instances):
        """Pose losses of the ground-truth pairs (``gt_*`` fields, docs/design.md). A pair
        without an object (``gt_has_object`` False) has a stand-in object box, a zero
        intersection and zero object losses."""
        hand_features, object_features, inter_features = self.pool_pair_features(
            features,
            [x.gt_hand_boxes for x in instances],
            [x.gt_object_boxes for x in instances],
            [x.gt_has_hand & x.gt_has_object for x in instances],
        )
        hand = self.hand_head(hand_features)
        obj = self.object_head(self.contextual_reasoning(object_features, inter_features))
        losses = self.hand_head.losses(hand, instances)
        losses.update(self.object_head.losses(obj, instances))
        return losses

    def pool_pair_features(self, features, hand_boxes, object_boxes, both_present=None,
                           pool_hands=True):  # fmt: skip
        """ROIAlign features (K, C, R, R) of the hand boxes (None unless ``pool_hands``),
        object boxes (per image Boxes) and their intersections (image order); intersection
        features are zero where the boxes do not intersect or where ``both_present`` (per
        image (k,) bool: the pair has both a hand and an object) is False."""
        x = [features[self.pose_in_feature]]
        hand_tensor = cat([b.tensor for b in hand_boxes])
        inter, valid = intersection_box(hand_tensor, cat([b.tensor for b in object_boxes]))
        if both_present is not None:
            valid = valid & cat(both_present)
        # Empty intersections pool a valid stand-in box; their features are zeroed below.
        inter = torch.where(valid[:, None], inter, hand_tensor)
        inter_boxes = list(map(Boxes, inter.split([len(b) for b in hand_boxes])))
        hand = self.pose_pooler(x, hand_boxes) if pool_hands else None
        obj = self.pose_pooler(x, object_boxes)
        inter = self.pose_pooler(x, inter_boxes) * valid[:, None, None, None]
        return hand, obj, inter
