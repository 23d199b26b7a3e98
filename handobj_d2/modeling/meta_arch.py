"""HandObjectRCNN: Detectron2's GeneralizedRCNN (ResNet-FPN backbone, RPN, ROI heads) whose ROI
heads also estimate the hand's MANO mesh and the object's pose for a hand-object pair.

Input: the ``HandObjectDatasetMapper`` dicts of docs/design.md ("Mapper output"). Training
uses ``instances`` for the detector and the ground-truth ``hand`` / ``object`` boxes for the
pose heads. Inference takes the pair's boxes from the input (MODEL.HANDOBJ.INFERENCE_BOXES
"given": ``hand_box`` / ``object_box``, or ``hand["box"]`` / ``object["box"]``, model-input
pixels) or from the detector ("detected").

Output per image (docs/design.md "Model output"; 2D in original-image pixels):
``instances``: Instances(pred_boxes, scores, pred_classes), the detections ("given" mode: the
given boxes with score 1), and ``hand_object``: one row per pair with hand_boxes, hand_scores,
object_boxes, object_scores, joints2d (K, 21, 2) px, joints2d_conf (K, 21), mano_pose (K, 48)
axis-angle, mano_shape (K, 10), joints3d (K, 21, 3) and vertices (K, 778, 3) metres wrist-relative
in the OpenCV camera frame, control_points2d (K, 21, 2) px, control_points_conf (K, 21),
object_R (K, 3, 3), object_t (K, 3) metres in the frame of ``camera_K``, object_pose_valid (K,).
"""

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import BitMasks, Boxes, Instances

from ..constants import HAND_CLASS, NUM_CONTROL_POINTS, NUM_JOINTS, OBJECT_CLASS
from .roi_heads import select_hand_object_pair

# Fields of a pair that the pose heads need at inference but the output does not carry.
_PNP_FIELDS = ("camera_K", "control_points3d", "has_pnp_inputs")


def _tensor(value, shape, what, dtype=torch.float32):
    """``value`` (list, numpy array or tensor) as a CPU tensor of ``shape``; a clear error
    naming the field otherwise."""
    tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)}, got {tuple(tensor.shape)}")
    return tensor.to(dtype)


def _flag(record, key):
    return bool(record.get(key, False))


def _transform_points(points, matrix):
    """Points (..., 2) through a homogeneous 2D transform (3, 3)."""
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1) @ matrix.T
    return homogeneous[..., :2] / homogeneous[..., 2:]


def _transform_boxes(boxes, matrix):
    """Axis-aligned bounds (K, 4) of boxes (K, 4) after a 2D transform of their corners."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    corners = torch.stack([x1, y1, x2, y1, x1, y2, x2, y2], -1).view(-1, 4, 2)
    corners = _transform_points(corners, matrix)
    return torch.cat([corners.min(1).values, corners.max(1).values], -1)


def _input_name(record):
    return f"input {record.get('image_id', record.get('file_name', '?'))!r}"


def _training_pair(record, image_size, pseudo_weight):
    """One-row Instances with a sample's pose-head ground truth (model-input pixels).

    A missing hand or object gets a stand-in box (the other box, or the whole image) and
    ``has_hand`` / ``has_object`` False; its losses are zero.
    """
    name = _input_name(record)
    hand, obj = record.get("hand"), record.get("object")
    height, width = image_size
    image_box = torch.tensor([0.0, 0.0, width, height])
    boxes = {
        part: _tensor(label["box"], (4,), f"{name} {part}.box")
        for part, label in (("hand", hand), ("object", obj))
        if label
    }
    hand_box = boxes.get("hand", boxes.get("object", image_box))
    object_box = boxes.get("object", boxes.get("hand", image_box))
    hand, obj = hand or {}, obj or {}

    def field(label, key, shape, present):
        if not present:
            return torch.zeros((1,) + shape)
        if key not in label:
            raise ValueError(f"{name}: '{key}' is missing")
        return _tensor(label[key], shape, f"{name} {key}")[None]

    has_joints3d, has_mano = _flag(hand, "has_joints3d"), _flag(hand, "has_mano")
    has_joints2d = "hand" in boxes and bool(hand.get("has_joints2d", "joints2d" in hand))
    joints3d = field(hand, "joints3d", (NUM_JOINTS, 3), has_joints3d)
    has_pose = "object" in boxes and _flag(obj, "has_pose")
    if "mask" in obj:
        mask = _tensor(obj["mask"], (height, width), f"{name} object.mask", torch.bool)
    else:  # no segmentation: the whole object box counts as the object
        mask = torch.zeros(height, width, dtype=torch.bool)
        x1, y1, x2, y2 = object_box.round().long().tolist()
        mask[max(y1, 0) : y2, max(x1, 0) : x2] = True
    return Instances(
        image_size,
        hand_boxes=Boxes(hand_box[None]),
        object_boxes=Boxes(object_box[None]),
        has_hand=torch.tensor(["hand" in boxes]),
        has_object=torch.tensor(["object" in boxes]),
        gt_joints2d=field(hand, "joints2d", (NUM_JOINTS, 2), has_joints2d),
        gt_has_joints2d=torch.tensor([has_joints2d]),
        gt_joints3d=joints3d - joints3d[:, :1],
        gt_has_joints3d=torch.tensor([has_joints3d]),
        gt_mano_pose=field(hand, "mano_pose", (48,), has_mano),
        gt_mano_shape=field(hand, "mano_shape", (10,), has_mano),
        gt_has_mano=torch.tensor([has_mano]),
        gt_control_points2d=field(obj, "control_points2d", (NUM_CONTROL_POINTS, 2), has_pose),
        gt_has_object_pose=torch.tensor([has_pose]),
        gt_object_masks=BitMasks(mask[None]),
        loss_weight=torch.tensor([pseudo_weight if _flag(record, "is_pseudo_label") else 1.0]),
    )


def _given_pair(record, image_size):
    """Pair (one row, scores 1) from the boxes given with the input (model-input pixels)."""
    boxes = []
    for part in ("hand", "object"):
        box = record.get(f"{part}_box")
        if box is None and isinstance(record.get(part), dict):
            box = record[part].get("box")
        if box is None:
            raise ValueError(
                f"{_input_name(record)}: MODEL.HANDOBJ.INFERENCE_BOXES is 'given' but the "
                f"input has no '{part}_box' (or '{part}': {{'box': ...}}); give both boxes or "
                "set MODEL.HANDOBJ.INFERENCE_BOXES to 'detected'"
            )
        boxes.append(Boxes(_tensor(box, (4,), f"{_input_name(record)} {part}_box")[None]))
    ones = torch.ones(1)
    return Instances(
        image_size, hand_boxes=boxes[0], hand_scores=ones, object_boxes=boxes[1], object_scores=ones
    )


def _add_pnp_inputs(pair, record):
    """Attach ``camera_K``, ``control_points3d`` and ``has_pnp_inputs`` to every row."""
    k = len(pair)
    points = record.get("control_points3d")
    if points is None and isinstance(record.get("object"), dict):
        points = record["object"].get("control_points3d")
    camera_K = record.get("camera_K")
    usable = points is not None and camera_K is not None
    name = _input_name(record)
    if usable:
        points = _tensor(points, (NUM_CONTROL_POINTS, 3), f"{name} control_points3d")
        camera_K = _tensor(camera_K, (3, 3), f"{name} camera_K")
    else:
        points, camera_K = torch.zeros(NUM_CONTROL_POINTS, 3), torch.eye(3)
    device = pair.hand_boxes.device
    pair.control_points3d = points.to(device).expand(k, -1, -1)
    pair.camera_K = camera_K.to(device).expand(k, -1, -1)
    pair.has_pnp_inputs = torch.full((k,), usable, dtype=torch.bool, device=device)


@META_ARCH_REGISTRY.register()
class HandObjectRCNN(GeneralizedRCNN):
    """GeneralizedRCNN + the hand-object pose branch of :class:`HandObjectROIHeads`."""

    @configurable
    def __init__(
        self,
        *,
        detector_on,
        inference_boxes,
        detection_score_thresh,
        pseudo_loss_weight,
        frozen_bn=False,
        **kwargs,
    ):
        """
        Args:
            detector_on (bool): train the RPN + box head with the pose heads.
            inference_boxes (str): "given" or "detected".
            detection_score_thresh (float): minimum hand / object score in "detected" mode.
            pseudo_loss_weight (float): multiplies every loss of pseudo-labelled samples.
            frozen_bn (bool): turn every BatchNorm2d into FrozenBatchNorm2d (fixed statistics).
            kwargs: GeneralizedRCNN arguments.
        """
        super().__init__(**kwargs)
        if frozen_bn:
            FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        if inference_boxes not in ("given", "detected"):
            raise ValueError(
                "MODEL.HANDOBJ.INFERENCE_BOXES must be 'given' or 'detected', got "
                f"{inference_boxes!r}"
            )
        self.detector_on = detector_on
        self.inference_boxes = inference_boxes
        self.detection_score_thresh = detection_score_thresh
        self.pseudo_loss_weight = pseudo_loss_weight

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret.update(
            detector_on=cfg.MODEL.HANDOBJ.DETECTOR_ON,
            inference_boxes=cfg.MODEL.HANDOBJ.INFERENCE_BOXES,
            detection_score_thresh=cfg.MODEL.HANDOBJ.DETECTION_SCORE_THRESH,
            pseudo_loss_weight=cfg.SEMI.PSEUDO_LOSS_WEIGHT,
            frozen_bn=cfg.MODEL.HANDOBJ.FROZEN_BN,
        )
        return ret

    def preprocess_image(self, batched_inputs):
        """Normalise, pad and batch the images; channels-last on CPU, where oneDNN's
        convolutions run the backbone about 15% faster in that layout."""
        images = super().preprocess_image(batched_inputs)
        if images.tensor.device.type == "cpu":
            images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, batched_inputs):
        """Training: dict of losses (detector and pose heads). Inference: see the module."""
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        losses = {}
        if self.detector_on:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
            _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
            losses.update(proposal_losses)
            losses.update(detector_losses)
        pairs = [
            _training_pair(x, size, self.pseudo_loss_weight).to(self.device)
            for x, size in zip(batched_inputs, images.image_sizes)
        ]
        losses.update(self.roi_heads.forward_pose(features, pairs))
        return losses

    def inference(self, batched_inputs, do_postprocess=True):
        """Per image a dict with ``instances`` and ``hand_object`` (see the module)."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if self.inference_boxes == "detected":
            proposals, _ = self.proposal_generator(images, features, None)
            detections, _ = self.roi_heads(images, features, proposals, None)
            pairs = [select_hand_object_pair(d, self.detection_score_thresh) for d in detections]
        else:
            pairs = [
                _given_pair(x, size).to(self.device)
                for x, size in zip(batched_inputs, images.image_sizes)
            ]
            detections = [_pair_detections(p) for p in pairs]
        for pair, x in zip(pairs, batched_inputs):
            _add_pnp_inputs(pair, x)
        pairs = self.roi_heads.forward_pose(features, pairs)
        for pair in pairs:
            for name in _PNP_FIELDS:
                pair.remove(name)
        if not do_postprocess:
            return [{"instances": d, "hand_object": p} for d, p in zip(detections, pairs)]
        return [_postprocess(d, p, x) for d, p, x in zip(detections, pairs, batched_inputs)]


def _pair_detections(pair):
    """Detections Instances made of a pair's hand and object boxes and scores."""
    k = len(pair)
    classes = torch.tensor([HAND_CLASS] * k + [OBJECT_CLASS] * k, device=pair.hand_boxes.device)
    return Instances(
        pair.image_size,
        pred_boxes=Boxes.cat([pair.hand_boxes, pair.object_boxes]),
        scores=torch.cat([pair.hand_scores, pair.object_scores]),
        pred_classes=classes,
    )


def _postprocess(detections, pair, record):
    """Map 2D outputs from model-input pixels to the original image (inverse of
    ``image_to_input``) and clip boxes to it."""
    device = pair.hand_boxes.device
    matrix = record.get("image_to_input")
    matrix = torch.eye(3) if matrix is None else _tensor(matrix, (3, 3), "image_to_input")
    to_image = torch.linalg.inv(matrix.double()).float().to(device)
    size = (
        int(record.get("height", pair.image_size[0])),
        int(record.get("width", pair.image_size[1])),
    )

    def boxes(b):
        out = Boxes(_transform_boxes(b.tensor, to_image))
        out.clip(size)
        return out

    instances = Instances(
        size,
        pred_boxes=boxes(detections.pred_boxes),
        scores=detections.scores,
        pred_classes=detections.pred_classes,
    )
    hand_object = Instances(size)
    for name, value in pair.get_fields().items():
        if isinstance(value, Boxes):
            value = boxes(value)
        elif name in ("joints2d", "control_points2d"):
            value = _transform_points(value, to_image)
        hand_object.set(name, value)
    return {"instances": instances, "hand_object": hand_object}
