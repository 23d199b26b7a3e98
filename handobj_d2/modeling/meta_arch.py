"""HandObjectRCNN: Detectron2's GeneralizedRCNN (ResNet-FPN backbone, RPN, ROI heads) whose ROI
heads also estimate the hand's MANO mesh and the object's pose for a hand-object pair.

Input: the ``HandObjectDatasetMapper`` dicts of docs/design.md ("Mapper output"). Training
uses ``instances`` for the detector and the ground-truth pairs ``hand_object`` for the pose
heads. Inference reads no ground truth: the pose heads run on the pair selected from
detections: those passed as ``detected_instances`` (as GeneralizedRCNN), else, by
MODEL.HANDOBJ.INFERENCE_BOXES, the detector's ("detected") or the boxes given with the input
("given": ``hand_box`` and optionally ``object_box``, model-input pixels, score 1).

Output per image (docs/design.md "Model output"), as GeneralizedRCNN's: ``{"instances":
Instances}``, one row per hand-object pair (the hand is the row's detection) with the pose
branch's ``pred_*`` fields, plus ``detections``, the hand and object detections the pair was
taken from; with MODEL.HANDOBJ.POSE_ON False ``instances`` are the detections. Post-processing
maps 2D fields from model-input pixels to the original image and solves the object pose (PnP)
from the input's ``camera_K`` and ``control_points3d``.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, Instances

from .pnp import object_poses
from .roi_heads import hand_object_detections

# Fields of the pose output in pixels, moved back to the original image by postprocessing.
_POINT_FIELDS = ("pred_joints2d", "pred_control_points2d", "pred_control_point_votes")


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
    """Detections (a hand, and an object when ``object_box`` is given; scores 1) from the
    boxes given with the input."""
    if record.get("hand_box") is None:
        name = record.get("image_id", record.get("file_name", "?"))
        raise ValueError(
            f"input {name!r}: MODEL.HANDOBJ.INFERENCE_BOXES is 'given' but the input has no "
            "'hand_box'; give it (and 'object_box' for the object) or set "
            "MODEL.HANDOBJ.INFERENCE_BOXES to 'detected'"
        )
    boxes = [
        None if record.get(key) is None else _float_tensor(record[key], (4,)).tolist()
        for key in ("hand_box", "object_box")
    ]
    return hand_object_detections(image_size, *boxes)


@META_ARCH_REGISTRY.register()
class HandObjectRCNN(GeneralizedRCNN):
    """GeneralizedRCNN + the hand-object pose branch of :class:`HandObjectROIHeads`."""

    @configurable
    def __init__(self, *, detector_on, inference_boxes, pnp, frozen_bn=False, **kwargs):
        """
        Args:
            detector_on (bool): train the RPN + box head with the pose heads.
            inference_boxes (str): "given" or "detected", where :meth:`inference` takes the
                boxes when no ``detected_instances`` are passed.
            pnp (dict): ``min_points``, ``reprojection_error`` (model-input pixels),
                ``iterations`` of the post-processing PnP-RANSAC (``pnp.object_poses``).
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
        self.pnp = dict(pnp)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        obj = cfg.MODEL.HANDOBJ.OBJECT
        ret.update(
            detector_on=cfg.MODEL.HANDOBJ.DETECTOR_ON,
            inference_boxes=cfg.MODEL.HANDOBJ.INFERENCE_BOXES,
            pnp={
                "min_points": obj.MIN_PNP_POINTS,
                "reprojection_error": obj.PNP_REPROJ_ERROR,
                "iterations": obj.PNP_ITERATIONS,
            },
            frozen_bn=cfg.MODEL.HANDOBJ.FROZEN_BN,
        )
        return ret

    def preprocess_image(self, batched_inputs):
        """Normalise, pad and batch the images; channels-last on CPU, where oneDNN's
        convolutions run a backbone with fixed norms faster in that layout, unless the
        backbone's BatchNorms train on batch statistics (their training step is slower in it)."""
        images = super().preprocess_image(batched_inputs)
        if images.tensor.device.type == "cpu" and not self._batch_statistics():
            images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        return images

    def _batch_statistics(self):
        """Whether a BatchNorm of the backbone normalises with batch statistics now."""
        return any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and (m.training or m.running_mean is None)
            for m in self.backbone.modules()
        )

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
            batched_inputs (list[dict]): model inputs (docs/design.md "Mapper output"); read:
                ``image``, and ``hand_box`` / ``object_box`` (MODEL.HANDOBJ.INFERENCE_BOXES
                "given"), ``camera_K``, ``control_points3d``, ``image_to_input``, ``height``,
                ``width`` (post-processing). No ground truth.
            detected_instances (None or list[Instances]): per image detections (pred_boxes,
                scores, pred_classes; model-input pixels) to take the hand-object pair from
                instead of MODEL.HANDOBJ.INFERENCE_BOXES.
            do_postprocess (bool): post-process (see the module).

        Returns:
            do_postprocess: per image ``{"instances": Instances, "detections": Instances}``
            (see the module). Otherwise per image the ROI heads' Instances in model-input
            pixels, without the object pose, as GeneralizedRCNN.
        """
        assert not self.training
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        pose_on = self.roi_heads.pose_on
        if detected_instances is None and pose_on and self.inference_boxes == "given":
            detected_instances = [
                _given_detections(x, size) for x, size in zip(batched_inputs, images.image_sizes)
            ]
        if detected_instances is None:
            proposals, _ = self.proposal_generator(images, features, None)
            detected_instances = self.roi_heads.detect(features, proposals)
        detected_instances = [x.to(self.device) for x in detected_instances]
        results = self.roi_heads.forward_with_given_boxes(features, detected_instances)
        if not do_postprocess:
            return results
        outputs = []
        for result, detections, record in zip(results, detected_instances, batched_inputs):
            if pose_on:
                output = {
                    "instances": self.postprocess_pairs(result, record),
                    "detections": _to_original_image(detections, record),
                }
            else:
                output = {"instances": _to_original_image(result, record)}
            outputs.append(output)
        return outputs

    def postprocess_pairs(self, pairs, record):
        """The pose branch's rows of one image (model-input pixels) with their object pose
        (PnP with the input's ``camera_K`` and ``control_points3d``, in model-input pixels,
        where PNP_REPROJ_ERROR is defined) and their 2D fields in the original image."""
        object_poses(pairs, record.get("camera_K"), record.get("control_points3d"), **self.pnp)
        return _to_original_image(pairs, record)


def _to_original_image(instances, record):
    """Instances with the 2D fields mapped from model-input pixels to the original image
    (inverse of ``image_to_input``, identity when absent), boxes clipped to it."""
    matrix = record.get("image_to_input")
    matrix = torch.eye(3) if matrix is None else _float_tensor(matrix, (3, 3))
    device = instances.pred_boxes.device
    to_image = torch.linalg.inv(matrix.double()).float().to(device)
    size = (
        int(record.get("height", instances.image_size[0])),
        int(record.get("width", instances.image_size[1])),
    )
    out = Instances(size)
    for name, value in instances.get_fields().items():
        if isinstance(value, Boxes):  # clipped; NaN boxes (no object) stay NaN
            bounds = value.tensor.new_tensor([size[1], size[0]]).repeat(2)
            value = Boxes(_transform_boxes(value.tensor, to_image).clamp(min=0).minimum(bounds))
        elif name in _POINT_FIELDS:
            value = _transform_points(value, to_image)
        out.set(name, value)
    return out
