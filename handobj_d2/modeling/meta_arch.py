"""HandObjectRCNN: Detectron2's GeneralizedRCNN (ResNet-FPN backbone, RPN, ROI heads) whose ROI
heads also estimate the hand's MANO mesh and the object's pose for a hand-object pair.

Input: the ``HandObjectDatasetMapper`` dicts of docs/design.md ("Mapper output"). Training
uses ``instances`` for the detector and the ground-truth pairs ``hand_object`` for the pose
heads. Inference runs the pose heads on the pair selected from detections: those passed as
``detected_instances`` (as GeneralizedRCNN), else, by MODEL.HANDOBJ.INFERENCE_BOXES, the
detector's ("detected") or the boxes given with the input ("given": ``hand_box`` and
``object_box``, or the ``hand_object`` ground truth; model-input pixels, score 1).

Output per image (docs/design.md "Model output"; 2D in original-image pixels): ``instances``,
the detections (Instances with pred_boxes, scores, pred_classes), and ``hand_object``, one row
per pair with the ``pred_*`` fields listed there.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, Instances

from ..constants import NUM_CONTROL_POINTS
from .roi_heads import hand_object_detections

# Fields of the pose output in pixels, moved back to the original image by postprocessing.
_POINT_FIELDS = ("pred_joints2d", "pred_control_points2d")


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


def _float_tensor(value, shape):
    return torch.as_tensor(value, dtype=torch.float32).reshape(shape)


def _given_detections(record, image_size):
    """Detections (hand, object; scores 1) from the boxes given with the input."""
    pair = record.get("hand_object")
    boxes = []
    for part in ("hand", "object"):
        box = record.get(f"{part}_box")
        if box is None and pair is not None and len(pair) and bool(pair.get(f"gt_has_{part}")[0]):
            box = pair.get(f"gt_{part}_boxes").tensor[0]
        if box is None:
            name = record.get("image_id", record.get("file_name", "?"))
            raise ValueError(
                f"input {name!r}: MODEL.HANDOBJ.INFERENCE_BOXES is 'given' but the input has no "
                f"'{part}_box' (nor a ground-truth {part} in 'hand_object'); give both boxes or "
                "set MODEL.HANDOBJ.INFERENCE_BOXES to 'detected'"
            )
        boxes.append(_float_tensor(box, (4,)).tolist())
    return hand_object_detections(image_size, *boxes)


def _pnp_inputs(record, device):
    """(camera_K (3, 3), control_points3d (P, 3)) of an input, or None when it lacks either:
    ``camera_K`` and ``control_points3d`` (or the ground-truth object's
    ``gt_control_points3d``)."""
    points = record.get("control_points3d")
    pair = record.get("hand_object")
    if points is None and pair is not None and len(pair) and bool(pair.gt_has_object[0]):
        points = pair.gt_control_points3d[0]
    if points is None or record.get("camera_K") is None:
        return None
    return (
        _float_tensor(record["camera_K"], (3, 3)).to(device),
        _float_tensor(points, (NUM_CONTROL_POINTS, 3)).to(device),
    )


@META_ARCH_REGISTRY.register()
class HandObjectRCNN(GeneralizedRCNN):
    """GeneralizedRCNN + the hand-object pose branch of :class:`HandObjectROIHeads`."""

    @configurable
    def __init__(self, *, detector_on, inference_boxes, frozen_bn=False, **kwargs):
        """
        Args:
            detector_on (bool): train the RPN + box head with the pose heads.
            inference_boxes (str): "given" or "detected", where :meth:`inference` takes the
                boxes when no ``detected_instances`` are passed.
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

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret.update(
            detector_on=cfg.MODEL.HANDOBJ.DETECTOR_ON,
            inference_boxes=cfg.MODEL.HANDOBJ.INFERENCE_BOXES,
            frozen_bn=cfg.MODEL.HANDOBJ.FROZEN_BN,
        )
        return ret

    def preprocess_image(self, batched_inputs):
        """Normalise, pad and batch the images; channels-last on CPU, where oneDNN's
        convolutions run the backbone faster in that layout."""
        images = super().preprocess_image(batched_inputs)
        if images.tensor.device.type == "cpu":
            images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, batched_inputs):
        """Training: dict of losses (detector and pose heads). Inference: see :meth:`inference`."""
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        losses, proposals, gt_instances = {}, None, None
        if self.detector_on:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
            losses.update(proposal_losses)
        pairs = [x["hand_object"].to(self.device) for x in batched_inputs]
        _, roi_losses = self.roi_heads(images, features, proposals, gt_instances, hand_object=pairs)
        losses.update(roi_losses)
        return losses

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        """
        Args:
            batched_inputs (list[dict]): mapper outputs (docs/design.md "Mapper output").
            detected_instances (None or list[Instances]): per image detections (pred_boxes,
                scores, pred_classes; model-input pixels) to take the hand-object pair from
                instead of MODEL.HANDOBJ.INFERENCE_BOXES.
            do_postprocess (bool): map the outputs to the original image (see the module);
                otherwise they stay in model-input pixels.

        Returns:
            list[dict]: per image ``instances`` and ``hand_object`` (see the module).
        """
        assert not self.training
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        pnp_inputs = [_pnp_inputs(x, self.device) for x in batched_inputs]
        if detected_instances is None and self.inference_boxes == "given":
            detected_instances = [
                _given_detections(x, size) for x, size in zip(batched_inputs, images.image_sizes)
            ]
        if detected_instances is None:
            proposals, _ = self.proposal_generator(images, features, None)
            results, _ = self.roi_heads(images, features, proposals, None, pnp_inputs=pnp_inputs)
        else:
            detected_instances = [x.to(self.device) for x in detected_instances]
            results = self.roi_heads.forward_with_given_boxes(
                features, detected_instances, pnp_inputs
            )
        if not do_postprocess:
            return results
        return [_postprocess(result, x) for result, x in zip(results, batched_inputs)]


def _postprocess(result, record):
    """Map 2D outputs from model-input pixels to the original image (inverse of
    ``image_to_input``) and clip boxes to it."""
    detections, pair = result["instances"], result["hand_object"]
    device = detections.pred_boxes.device
    matrix = record.get("image_to_input")
    matrix = torch.eye(3) if matrix is None else _float_tensor(matrix, (3, 3))
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
        elif name in _POINT_FIELDS:
            value = _transform_points(value, to_image)
        hand_object.set(name, value)
    return {"instances": instances, "hand_object": hand_object}
