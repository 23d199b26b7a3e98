"""HandObjectDatasetMapper: a dataset record (docs/design.md "Dataset records") -> the model's
input dict (docs/design.md "Mapper output").

The model input is a ``CROP_SIZE`` square crop of the fused hand/object box enlarged
``CROP_SCALE`` times. Training adds, as the released code: an in-plane rotation uniform in
[-ROTATION, ROTATION] about the principal point (a camera roll, see ``transforms``), scale and
centre jitter of the crop, colour jitter and Gaussian blur. The rotation and the crop compose
into one affine (``image_to_input``) that moves the image, the mask, the 2D joints and control
points, and gives the input's intrinsics ``crop @ K``; the roll rotates the 3D joints, the MANO
global rotation and the object pose. Test time: the plain crop, no randomness.
"""

import logging

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances

from ..constants import HAND_CLASS, NUM_CONTROL_POINTS, NUM_JOINTS, OBJECT_CLASS
from ..geometry import crop_matrix, project_points, square_box, union_box
from ..utils.io import read_image
from . import transforms as T
from .released_protocol import released_test_boxes
from .segmentation import decode_segmentation

logger = logging.getLogger(__name__)

__all__ = ["HandObjectDatasetMapper", "hand_object_instances"]


def _array(value, shape, what):
    array = np.asarray(value, dtype=np.float64)
    if array.shape != tuple(shape) or not np.isfinite(array).all():
        raise ValueError(
            f"{what}: expected finite values of shape {tuple(shape)}, got {array.shape}"
        )
    return array


def _f32(array):
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def hand_object_instances(image_size, hand=None, obj=None, object_mask=None, loss_weight=1.0,
                          name="sample"):  # fmt: skip
    """The pose heads' ground truth of one sample: Instances with one hand-object pair, fields
    of docs/design.md "Mapper output" (model-input pixels, metres, OpenCV camera frame).

    Args:
        image_size: (H, W) of the model input.
        hand: None or dict with ``box`` (4,) px and optionally ``joints2d`` (21, 2) px,
            ``joints3d`` (21, 3) m (camera frame; made root-relative here), ``mano_pose``
            (48,), ``mano_shape`` (10,) and the flags ``has_joints2d`` (default: joints2d
            given), ``has_joints3d``, ``has_mano``.
        obj: None or dict with ``box`` (4,) px and optionally ``control_points2d`` (21, 2) px,
            ``control_points3d`` (21, 3) m, ``object_R`` (3, 3), ``object_t`` (3,) and the flag
            ``has_pose``.
        object_mask: (H, W) bool / uint8 object mask or None (the object box stands in).
        loss_weight (float): multiplies the sample's pose losses.
        name (str): the sample, for errors.

    A missing hand or object gets a stand-in box (the other box, or the whole image), zeros and
    ``gt_has_hand`` / ``gt_has_object`` False; its losses are zero.
    """
    height, width = image_size
    hand, obj = hand or {}, obj or {}

    def field(label, key, shape, present):
        if not present:
            return torch.zeros((1,) + shape)
        if label.get(key) is None:
            raise ValueError(f"{name}: '{key}' is missing")
        return _f32(_array(label[key], shape, f"{name} {key}"))[None]

    boxes = {
        part: _array(label["box"], (4,), f"{name} {part} box")
        for part, label in (("hand", hand), ("object", obj))
        if label
    }
    image_box = np.array([0.0, 0.0, width, height])
    hand_box = boxes.get("hand", boxes.get("object", image_box))
    object_box = boxes.get("object", boxes.get("hand", image_box))
    has_hand, has_object = "hand" in boxes, "object" in boxes
    has_joints2d = has_hand and bool(hand.get("has_joints2d", hand.get("joints2d") is not None))
    has_joints3d = has_hand and bool(hand.get("has_joints3d", False))
    has_mano = has_hand and bool(hand.get("has_mano", False))
    has_pose = has_object and bool(obj.get("has_pose", False))
    joints3d = field(hand, "joints3d", (NUM_JOINTS, 3), has_joints3d)
    if object_mask is None:  # no segmentation: the whole object box counts as the object
        mask = torch.zeros(height, width, dtype=torch.bool)
        x1, y1, x2, y2 = np.round(object_box).astype(int).tolist()
        mask[max(y1, 0) : y2, max(x1, 0) : x2] = True
    else:
        mask = torch.as_tensor(np.asarray(object_mask) > 0)
        if tuple(mask.shape) != (height, width):
            raise ValueError(f"{name} object mask: expected {(height, width)}, got {mask.shape}")
    return Instances(
        (height, width),
        gt_hand_boxes=Boxes(_f32(hand_box)[None]),
        gt_object_boxes=Boxes(_f32(object_box)[None]),
        gt_has_hand=torch.tensor([has_hand]),
        gt_has_object=torch.tensor([has_object]),
        gt_joints2d=field(hand, "joints2d", (NUM_JOINTS, 2), has_joints2d),
        gt_has_joints2d=torch.tensor([has_joints2d]),
        gt_joints3d=joints3d - joints3d[:, :1],
        gt_has_joints3d=torch.tensor([has_joints3d]),
        gt_mano_pose=field(hand, "mano_pose", (48,), has_mano),
        gt_mano_shape=field(hand, "mano_shape", (10,), has_mano),
        gt_has_mano=torch.tensor([has_mano]),
        gt_control_points2d=field(obj, "control_points2d", (NUM_CONTROL_POINTS, 2), has_pose),
        gt_control_points3d=field(
            obj,
            "control_points3d",
            (NUM_CONTROL_POINTS, 3),
            obj.get("control_points3d") is not None,
        ),
        gt_object_R=field(obj, "object_R", (3, 3), has_pose),
        gt_object_t=field(obj, "object_t", (3,), has_pose),
        gt_has_object_pose=torch.tensor([has_pose]),
        gt_object_masks=BitMasks(mask[None]),
        gt_loss_weight=torch.tensor([float(loss_weight)]),
    )


def _annotation(record, category, name):
    found = [a for a in record.get("annotations", ()) if a.get("category_id") == category]
    if len(found) > 1:
        raise ValueError(f"{name}: {len(found)} annotations of category {category}, at most 1")
    return found[0] if found else None


def _xyxy(annotation, name):
    box = _array(annotation["bbox"], (4,), f"{name} bbox")
    mode = BoxMode(annotation.get("bbox_mode", BoxMode.XYXY_ABS))
    return np.asarray(BoxMode.convert(box.tolist(), mode, BoxMode.XYXY_ABS), dtype=np.float64)


class HandObjectDatasetMapper:
    """Callable mapping one dataset record to the model's input dict (see the module)."""

    @configurable
    def __init__(
        self,
        is_train,
        *,
        crop_size,
        crop_scale,
        rotation,
        scale_jitter,
        center_jitter,
        color_jitter,
        blur_max_sigma,
        image_format,
        pseudo_loss_weight=1.0,
        bad_sample_policy="fail",
        max_bad_samples=0,
        test_boxes="annotation",
    ):
        """
        Args:
            is_train (bool): random augmentation (True) or the deterministic crop (False).
            crop_size (int): side of the square model input, pixels.
            crop_scale (float): crop side / longer side of the fused hand/object box.
            rotation (float): maximum in-plane rotation, radians.
            scale_jitter (float), center_jitter (float): crop side x U(1 - s, 1 + s); crop
                centre + U(-c, c) x side.
            color_jitter (4 floats): brightness, contrast, saturation, hue strengths.
            blur_max_sigma (float): Gaussian blur sigma uniform in [0, max], pixels.
            image_format (str): "BGR" or "RGB", the channel order of the output image.
            pseudo_loss_weight (float): ``gt_loss_weight`` of pseudo-labelled records.
            bad_sample_policy (str): what a training record whose image, mask or annotation
                cannot be read does: "fail" (an error naming the file) or "skip" (returns
                None: Detectron2's data loader draws another record; the file and the reason
                are logged and kept in ``self.skipped``). Test mode always fails: a skipped
                record would leave a hole in the evaluation.
            max_bad_samples (int): "skip" fails anyway at the first bad file beyond this many
                distinct ones (counted per data-loader process).
            test_boxes (str): inference boxes and crop: "annotation" (the annotated boxes, the
                fused box enlarged ``crop_scale`` times) or "released" (the released code's,
                ``released_protocol.released_test_boxes``, for annotated hand and object pose).
        """
        if test_boxes not in ("annotation", "released"):
            raise ValueError(
                f"INPUT.HANDOBJ.TEST_BOXES must be 'annotation' or 'released', got {test_boxes!r}"
            )
        if bad_sample_policy not in ("fail", "skip"):
            raise ValueError(
                "DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY must be 'fail' or 'skip', got "
                f"{bad_sample_policy!r}"
            )
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"INPUT.FORMAT must be 'BGR' or 'RGB', got {image_format!r}")
        if len(color_jitter) != 4:
            raise ValueError(f"INPUT.HANDOBJ.COLOR_JITTER needs 4 values, got {color_jitter}")
        self.is_train = is_train
        self.crop_size = int(crop_size)
        self.crop_scale = float(crop_scale)
        self.rotation = float(rotation)
        self.scale_jitter = float(scale_jitter)
        self.center_jitter = float(center_jitter)
        self.color_jitter = tuple(float(x) for x in color_jitter)
        self.blur_max_sigma = float(blur_max_sigma)
        self.image_format = image_format
        self.pseudo_loss_weight = float(pseudo_loss_weight)
        self.skip_bad_samples = is_train and bad_sample_policy == "skip"
        self.max_bad_samples = int(max_bad_samples)
        self.skipped = {}  # file name -> reason, the bad records skipped so far
        self.test_boxes = test_boxes
        mode = "training" if is_train else "inference"
        logger.info(f"HandObjectDatasetMapper ({mode}): {self.crop_size}px crops")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        h = cfg.INPUT.HANDOBJ
        return {
            "is_train": is_train,
            "crop_size": h.CROP_SIZE,
            "crop_scale": h.CROP_SCALE,
            "rotation": h.ROTATION,
            "scale_jitter": h.SCALE_JITTER,
            "center_jitter": h.CENTER_JITTER,
            "color_jitter": list(h.COLOR_JITTER),
            "blur_max_sigma": h.BLUR_MAX_SIGMA,
            "image_format": cfg.INPUT.FORMAT,
            "pseudo_loss_weight": cfg.SEMI.PSEUDO_LOSS_WEIGHT,
            "bad_sample_policy": cfg.DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY,
            "max_bad_samples": cfg.DATALOADER.HANDOBJ.MAX_BAD_SAMPLES,
            "test_boxes": h.TEST_BOXES,
        }

    def __call__(self, dataset_dict):
        """Read the record's image (and object mask) and map it (see :meth:`map`); a record
        that cannot be read or mapped fails with its file named, or, under the "skip" policy,
        is counted and gives None."""
        path = dataset_dict.get("file_name", "?")
        try:
            return self._read_and_map(dataset_dict)
        except (OSError, ValueError, KeyError) as error:
            detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            message = detail if path in detail else f"{path}: {detail}"
            if not self.skip_bad_samples:
                if message == str(error):
                    raise
                raise ValueError(message) from error
            new = path not in self.skipped
            self.skipped[path] = message
            if len(self.skipped) > self.max_bad_samples:
                raise RuntimeError(
                    f"{len(self.skipped)} bad training records, more than "
                    f"DATALOADER.HANDOBJ.MAX_BAD_SAMPLES={self.max_bad_samples}; the last: "
                    f"{message}"
                ) from error
            if new:
                logger.warning(
                    f"Skipping bad training record ({len(self.skipped)} so far): {message}"
                )
            return None

    def _read_and_map(self, dataset_dict):
        path = dataset_dict["file_name"]
        image = read_image(path)
        expected = (dataset_dict.get("height"), dataset_dict.get("width"))
        if None not in expected and image.shape[:2] != tuple(expected):
            raise ValueError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} but its record says "
                f"{expected[1]}x{expected[0]}"
            )
        return self.map(dataset_dict, image, self.load_object_mask(dataset_dict))

    @staticmethod
    def load_object_mask(dataset_dict):
        """The record's object mask (h, w) bool at the segmentation file's own resolution, or
        None when the record names no segmentation file."""
        path = dataset_dict.get("segmentation_file")
        if not path:
            return None
        return decode_segmentation(path, dataset_dict.get("segmentation_format", "ho3d"))[1]

    def map(self, record, image, object_mask=None, view=None):
        """Model input dict of ``record`` given its decoded BGR uint8 image (H, W, 3) and object
        mask (h, w) bool (any resolution covering the image, or None).

        ``view``: optional (3, 3) pixel transform of the image before the crop (the teacher's
        transformed views of an unannotated frame, ``semi.teacher``); the input then has no
        ``camera_K``, the view being no pinhole camera's."""
        name = f"record {record.get('image_id', record.get('file_name', '?'))!r}"
        height, width = image.shape[:2]
        hand = _annotation(record, HAND_CLASS, name)
        obj = _annotation(record, OBJECT_CLASS, name)
        K = record.get("camera_K")
        K = None if K is None else _array(K, (3, 3), f"{name} camera_K")
        rng = np.random

        angle = rng.uniform(-self.rotation, self.rotation) if self.is_train else 0.0
        pivot = (
            K if K is not None else np.array([[1.0, 0, width / 2], [0, 1.0, height / 2], [0, 0, 1]])
        )
        roll = T.roll_matrix(angle)
        rotate = T.roll_homography(pivot, angle)
        if view is not None:
            rotate = np.asarray(view, dtype=np.float64) @ rotate

        hand_label = self._hand_label(hand, rotate, roll, name)
        object_label = self._object_label(obj, rotate, roll, K, name)
        # Boxes given without annotations (demo, unlabeled video): "hand_box" / "object_box".
        given = {
            key: T.transform_box(_array(record[key], (4,), f"{name} {key}"), rotate)
            for key, label in (("hand_box", hand_label), ("object_box", object_label))
            if label is None and record.get(key) is not None
        }
        boxes = [label["box"] for label in (hand_label, object_label) if label is not None]
        boxes += list(given.values())
        if boxes:
            fused = boxes[0] if len(boxes) == 1 else union_box(*boxes)
            if (fused[2:] - fused[:2]).max() < 1.0:
                raise ValueError(f"{name}: hand/object boxes are degenerate ({fused.tolist()})")
            if self.is_train:
                crop_box = T.jitter_crop_box(
                    fused, self.crop_scale, self.scale_jitter, self.center_jitter, rng
                )
            elif (
                self.test_boxes == "released"
                and hand_label is not None
                and object_label is not None
                and object_label["has_pose"]
            ):
                hand_label["box"], object_label["box"], crop_box = released_test_boxes(
                    hand_label["box"], object_label["control_points2d"], width, height
                )
            else:
                crop_box = square_box(fused, self.crop_scale)
        else:  # nothing to crop around: the whole image, padded to a square
            crop_box = square_box([0.0, 0.0, width, height])
        crop = crop_matrix(crop_box, self.crop_size)
        image_to_input = crop @ rotate

        size = self.crop_size
        out_image = T.warp_image(image, image_to_input, size)
        if self.is_train:
            out_image = T.color_jitter(out_image, *T.sample_color_jitter(self.color_jitter, rng))
            out_image = T.gaussian_blur(out_image, rng.uniform(0.0, self.blur_max_sigma))
        if self.image_format == "RGB":
            out_image = out_image[..., ::-1]
        result = {
            "image": torch.from_numpy(np.ascontiguousarray(out_image.transpose(2, 0, 1))),
            "height": height,
            "width": width,
            "image_id": record.get("image_id", record.get("file_name")),
            "image_to_input": _f32(image_to_input),
            "is_pseudo_label": bool(record.get("is_pseudo_label", False)),
        }
        if K is not None and view is None:
            result["camera_K"] = _f32(crop @ K)

        classes, detector_boxes = [], []
        for category, label in ((HAND_CLASS, hand_label), (OBJECT_CLASS, object_label)):
            if label is None:
                continue
            label["box"] = T.apply_affine(label["box"].reshape(2, 2), crop).reshape(4)
            for key in ("joints2d", "control_points2d"):
                if key in label:
                    label[key] = T.apply_affine(label[key], crop)
            clipped = np.clip(label["box"], 0, size)
            if (clipped[2:] > clipped[:2]).all():
                classes.append(category)
                detector_boxes.append(clipped)
        for key, box in given.items():
            result[key] = _f32(T.apply_affine(box.reshape(2, 2), crop).reshape(4))
        if not self.is_train:
            result.update(self._protocol_inputs(hand_label, object_label, obj))
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(_f32(np.array(detector_boxes).reshape(-1, 4)))
        instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
        result["instances"] = instances

        if object_label is not None and object_mask is not None:
            object_mask = self._warp_mask(object_mask, image_to_input, width, height)
        else:
            object_mask = None
        weight = self.pseudo_loss_weight if result["is_pseudo_label"] else 1.0
        result["hand_object"] = hand_object_instances(
            (size, size), hand_label, object_label, object_mask, weight, name
        )
        return result

    @staticmethod
    def _protocol_inputs(hand_label, object_label, annotation):
        """Test mode: what inference reads of the annotations, as plain keys: the evaluation
        protocol's ``hand_box`` / ``object_box`` (4,) in model-input pixels and the known
        object's ``control_points3d`` (21, 3) m, object frame."""
        out = {}
        for key, label in (("hand_box", hand_label), ("object_box", object_label)):
            if label is not None:
                out[key] = _f32(label["box"])
        if annotation is not None and annotation.get("control_points3d") is not None:
            out["control_points3d"] = _f32(object_label["control_points3d"])
        return out

    def _hand_label(self, annotation, rotate, roll, name):
        """Hand targets after the roll (pixels of the rotated original image), or None."""
        if annotation is None:
            return None
        joints2d = annotation.get("joints2d")
        has_joints2d = joints2d is not None
        joints2d = (
            _array(joints2d, (NUM_JOINTS, 2), f"{name} joints2d")
            if has_joints2d
            else np.zeros((NUM_JOINTS, 2))
        )
        box = T.transform_box(
            _xyxy(annotation, f"{name} hand"),
            rotate,
            inner_points=joints2d if has_joints2d else None,
        )
        joints3d = annotation.get("joints3d")
        has_joints3d = joints3d is not None
        joints3d = (
            _array(joints3d, (NUM_JOINTS, 3), f"{name} joints3d") @ roll.T
            if has_joints3d
            else np.zeros((NUM_JOINTS, 3))
        )
        has_mano = (
            annotation.get("mano_pose") is not None and annotation.get("mano_shape") is not None
        )
        if has_mano:
            mano_pose = _array(annotation["mano_pose"], (48,), f"{name} mano_pose").copy()
            mano_pose[:3] = T.rotate_axis_angle(mano_pose[:3], roll)
            mano_shape = _array(annotation["mano_shape"], (10,), f"{name} mano_shape")
        else:
            mano_pose, mano_shape = np.zeros(48), np.zeros(10)
        return {
            "box": box,
            "joints2d": T.apply_affine(joints2d, rotate),
            "has_joints2d": has_joints2d,
            "joints3d": joints3d,
            "has_joints3d": has_joints3d,
            "mano_pose": mano_pose,
            "mano_shape": mano_shape,
            "has_mano": has_mano,
        }

    def _object_label(self, annotation, rotate, roll, K, name):
        """Object targets after the roll (pixels of the rotated original image), or None."""
        if annotation is None:
            return None
        points2d = annotation.get("control_points2d")
        points2d = (
            None
            if points2d is None
            else _array(points2d, (NUM_CONTROL_POINTS, 2), f"{name} control_points2d")
        )
        points3d = annotation.get("control_points3d")
        points3d = (
            None
            if points3d is None
            else _array(points3d, (NUM_CONTROL_POINTS, 3), f"{name} control_points3d")
        )
        has_pose = points3d is not None and all(
            annotation.get(k) is not None for k in ("object_R", "object_t")
        )
        if has_pose:
            object_R = _array(annotation["object_R"], (3, 3), f"{name} object_R")
            object_t = _array(annotation["object_t"], (3,), f"{name} object_t")
            if points2d is None:
                if K is None:
                    raise ValueError(
                        f"{name}: an object pose without control_points2d needs camera_K"
                    )
                points2d = project_points(points3d @ object_R.T + object_t, K)
        box = T.transform_box(_xyxy(annotation, f"{name} object"), rotate, outer_points=points2d)
        if has_pose:
            points2d = T.apply_affine(points2d, rotate)
            object_R, object_t = roll @ object_R, roll @ object_t
        else:
            object_R, object_t = np.eye(3), np.zeros(3)
            points2d = np.zeros((NUM_CONTROL_POINTS, 2))
        if points3d is None:
            points3d = np.zeros((NUM_CONTROL_POINTS, 3))
        return {
            "box": box,
            "control_points2d": points2d,
            "control_points3d": points3d,
            "object_R": object_R,
            "object_t": object_t,
            "has_pose": has_pose,
        }

    def _warp_mask(self, mask, image_to_input, width, height):
        """Object mask (h, w) bool at any resolution -> (S, S) uint8 in model-input pixels."""
        mask = np.asarray(mask)
        mask = mask.view(np.uint8) if mask.dtype == bool else (mask > 0).astype(np.uint8)
        sx, sy = width / mask.shape[1], height / mask.shape[0]
        # Mask pixel centres -> image pixel centres (both with integer centres).
        to_image = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
        return T.warp_image(
            np.ascontiguousarray(mask), image_to_input @ to_image, self.crop_size, cv2.INTER_NEAREST
        )
