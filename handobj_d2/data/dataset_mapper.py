"""HandObjectDatasetMapper: a dataset record (docs/design.md "Dataset records") -> the model's
input dict (docs/design.md "Mapper output").

The model input is a ``CROP_SIZE`` square crop of the fused hand/object box enlarged
``CROP_SCALE`` times (or the released code's crop, INPUT.HANDOBJ.TRAIN_BOXES / TEST_BOXES
"released"). Training adds, as the released code: an in-plane rotation uniform in
[-ROTATION, ROTATION] about the principal point (a camera roll, see ``transforms``), scale and
centre jitter of the crop, colour jitter and Gaussian blur, drawn and applied by the
INPUT.HANDOBJ.AUGMENTATION of ``augmentation``. The rotation and the crop compose into one
affine (``image_to_input``) that moves the image, the mask, the 2D joints and control points,
and gives the input's intrinsics ``crop @ K``; the roll rotates the 3D joints, the MANO global
rotation and the object pose. Test time: the plain crop, no randomness.
"""

import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances

from ..constants import HAND_CLASS, NUM_CONTROL_POINTS, NUM_JOINTS, OBJECT_CLASS
from ..geometry import crop_matrix, project_points, square_box, union_box
from ..utils.io import read_image
from . import transforms as T
from .augmentation import build_augmentation
from .released_protocol import released_crop, released_test_boxes, released_train_boxes
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
        train_boxes="annotation",
        augmentation="default",
        joints3d_target="annotation",
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
            train_boxes (str): training boxes and crop: "annotation" (as ``test_boxes``, then
                jittered) or "released" (``released_protocol``: crop around the 2D joints and
                control points, hand box = 2D joints' box x1.1 and object box = control
                points' box after the crop; records without 2D joints or an object pose keep
                their annotated boxes).
            augmentation (str): the training augmentation's name in
                HANDOBJ_AUGMENTATION_REGISTRY ("default" or "released", ``augmentation``).
            joints3d_target (str): "annotation" (the record's joints3d) or "mano" (records
                with MANO labels train their 3D joints on MANO(pose, shape)'s joints, which the
                loss computes: their joints3d are not passed on).
        """
        for key, value in (("TEST_BOXES", test_boxes), ("TRAIN_BOXES", train_boxes)):
            if value not in ("annotation", "released"):
                raise ValueError(
                    f"INPUT.HANDOBJ.{key} must be 'annotation' or 'released', got {value!r}"
                )
        if joints3d_target not in ("annotation", "mano"):
            raise ValueError(
                f"INPUT.HANDOBJ.JOINTS3D_TARGET must be 'annotation' or 'mano', got "
                f"{joints3d_target!r}"
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
        self.augmentation = build_augmentation(
            augmentation,
            rotation=rotation,
            scale_jitter=scale_jitter,
            center_jitter=center_jitter,
            color_jitter=color_jitter,
            blur_max_sigma=blur_max_sigma,
        )
        self.image_format = image_format
        self.pseudo_loss_weight = float(pseudo_loss_weight)
        self.skip_bad_samples = is_train and bad_sample_policy == "skip"
        self.max_bad_samples = int(max_bad_samples)
        self.skipped = {}  # file name -> reason, the bad records skipped so far
        self.test_boxes = test_boxes
        self.train_boxes = train_boxes
        self.joints3d_target = joints3d_target
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
            "train_boxes": h.TRAIN_BOXES,
            "augmentation": h.AUGMENTATION,
            "joints3d_target": h.JOINTS3D_TARGET,
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

    def map(self, record, image, object_mask=None, params=None, view=None):
        """Model input dict of ``record`` given its decoded BGR uint8 image (H, W, 3) and object
        mask (h, w) bool (any resolution covering the image, or None). Training draws the
        augmentation's random values, unless given as ``params`` (``augmentation``).

        ``view``: optional (3, 3) pixel transform of the image before the crop (the teacher's
        transformed views of an unannotated frame, ``semi.teacher``); the input then has no
        ``camera_K``, the view being no pinhole camera's."""
        name = f"record {record.get('image_id', record.get('file_name', '?'))!r}"
        height, width = image.shape[:2]
        K = record.get("camera_K")
        K = None if K is None else _array(K, (3, 3), f"{name} camera_K")
        if self.is_train and params is None:
            params = self.augmentation.sample(np.random)
        rotate, roll = self._rotation(K, width, height, params)
        if view is not None:
            rotate = np.asarray(view, dtype=np.float64) @ rotate
        obj = _annotation(record, OBJECT_CLASS, name)
        hand_label = self._hand_label(_annotation(record, HAND_CLASS, name), rotate, roll, name)
        object_label = self._object_label(obj, rotate, roll, K, name)
        given = self._given_boxes(record, hand_label, object_label, rotate, name)
        crop_box = self._crop_box(hand_label, object_label, given, rotate, params, width, height,
                                  name)  # fmt: skip
        crop = crop_matrix(crop_box, self.crop_size)
        image_to_input = crop @ rotate
        result = {
            "image": self._input_image(image, image_to_input, params),
            "height": height,
            "width": width,
            "image_id": record.get("image_id", record.get("file_name")),
            "image_to_input": _f32(image_to_input),
            "is_pseudo_label": bool(record.get("is_pseudo_label", False)),
        }
        if K is not None and view is None:
            result["camera_K"] = _f32(crop @ K)
        self._labels_to_input(hand_label, object_label, crop)
        for key, box in given.items():
            result[key] = _f32(T.apply_affine(box.reshape(2, 2), crop).reshape(4))
        if not self.is_train:
            result.update(self._protocol_inputs(hand_label, object_label, obj))
        result["instances"] = self._detector_instances(hand_label, object_label)
        if object_label is not None and object_mask is not None:
            object_mask = self._input_mask(object_mask, image_to_input, width, height)
        weight = self.pseudo_loss_weight if result["is_pseudo_label"] else 1.0
        result["hand_object"] = hand_object_instances(
            (self.crop_size, self.crop_size), hand_label, object_label,
            object_mask if object_label is not None else None, weight, name,
        )  # fmt: skip
        return result

    def _input_mask(self, object_mask, image_to_input, width, height):
        """The object mask in model-input pixels ((S, S) uint8), warped as the image is."""
        warp = self.augmentation.warp_mask if self.is_train else T.warp_mask
        return warp(object_mask, image_to_input, width, height, self.crop_size)

    def _rotation(self, K, width, height, params):
        """(pixel map (3, 3 affine), camera roll (3, 3)) of the sample's in-plane rotation;
        identities at test time. Without intrinsics the image centre is the pivot."""
        if params is None:
            return np.eye(3), np.eye(3)
        pivot = (
            K if K is not None else np.array([[1.0, 0, width / 2], [0, 1.0, height / 2], [0, 0, 1]])
        )
        angle = params["angle"]
        return self.augmentation.rotation(pivot, angle), T.roll_matrix(angle)

    @staticmethod
    def _given_boxes(record, hand_label, object_label, rotate, name):
        """Boxes given without annotations (demo, unlabeled video): "hand_box" / "object_box"
        after the rotation, by key."""
        return {
            key: T.transform_box(_array(record[key], (4,), f"{name} {key}"), rotate)
            for key, label in (("hand_box", hand_label), ("object_box", object_label))
            if label is None and record.get(key) is not None
        }

    def _released_pair(self, hand_label, object_label):
        """Whether the released boxes apply: a hand (with 2D joints in training, whose crop is
        found around them) and an object with a pose."""
        return (
            hand_label is not None
            and (hand_label["has_joints2d"] or not self.is_train)
            and object_label is not None
            and object_label["has_pose"]
        )

    def _crop_box(self, hand_label, object_label, given, rotate, params, width, height, name):
        """Square crop box (pixels of the rotated image): around the fused hand/object box, or
        the released code's (TRAIN_BOXES / TEST_BOXES "released"), jittered in training by the
        augmentation's ``params``; the whole image when there is no box."""
        boxes = [label["box"] for label in (hand_label, object_label) if label is not None]
        boxes += list(given.values())
        if not boxes:  # nothing to crop around: the whole image, padded to a square
            return square_box([0.0, 0.0, width, height])
        fused = boxes[0] if len(boxes) == 1 else union_box(*boxes)
        if (fused[2:] - fused[:2]).max() < 1.0:
            raise ValueError(f"{name}: hand/object boxes are degenerate ({fused.tolist()})")
        released = self._released_pair(hand_label, object_label)
        if not self.is_train:
            if self.test_boxes == "released" and released:
                return self._released_test_crop(hand_label, object_label, width, height)
            return square_box(fused, self.crop_scale)
        if self.train_boxes == "released" and released:
            return self._released_train_crop(hand_label, object_label, rotate, params, width,
                                             height)  # fmt: skip
        centre, side = (fused[:2] + fused[2:]) / 2, (fused[2:] - fused[:2]).max() * self.crop_scale
        return self.augmentation.crop_box(centre, side, params)

    @staticmethod
    def _released_test_crop(hand_label, object_label, width, height):
        """The released evaluation's crop; its hand and object boxes replace the labels' (in
        original pixels, as the labels are at test time)."""
        hand_label["box"], object_label["box"], crop_box = released_test_boxes(
            hand_label["box"], object_label["control_points2d"], width, height
        )
        return crop_box

    def _released_train_crop(self, hand_label, object_label, rotate, params, width, height):
        """The released training crop: found around the 2D joints and control points in the
        original image, jittered there, its centre then carried by the rotation."""
        unrotate = np.linalg.inv(rotate)
        centre, side = released_crop(
            T.apply_affine(hand_label["joints2d"], unrotate),
            T.apply_affine(object_label["control_points2d"], unrotate),
            width,
            height,
        )
        box = self.augmentation.crop_box(centre, side, params)
        centre = T.apply_affine(((box[:2] + box[2:]) / 2)[None], rotate)[0]
        half = (box[2] - box[0]) / 2
        return np.concatenate([centre - half, centre + half])

    def _input_image(self, image, image_to_input, params):
        """The (3, S, S) uint8 model input in INPUT.FORMAT's channel order: the warped image,
        with the augmentation's photometric changes in training."""
        if params is None:
            out = T.warp_image(image, image_to_input, self.crop_size)
        else:
            out = self.augmentation.render(image, image_to_input, self.crop_size, params)
        if self.image_format == "RGB":
            out = out[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))

    def _labels_to_input(self, hand_label, object_label, crop):
        """Move the labels' boxes and 2D points (in place) from rotated-image pixels to model-input
        pixels; released training boxes follow from the moved points."""
        for label in (hand_label, object_label):
            if label is None:
                continue
            label["box"] = T.apply_affine(label["box"].reshape(2, 2), crop).reshape(4)
            for key in ("joints2d", "control_points2d"):
                if key in label:
                    label[key] = T.apply_affine(label[key], crop)
        if self.is_train and self.train_boxes == "released" and self._released_pair(
            hand_label, object_label
        ):
            hand_label["box"], object_label["box"] = released_train_boxes(
                hand_label["joints2d"], object_label["control_points2d"]
            )

    def _detector_instances(self, hand_label, object_label):
        """The detector's ground truth: a box (clipped to the input) and class per visible part."""
        classes, boxes = [], []
        for category, label in ((HAND_CLASS, hand_label), (OBJECT_CLASS, object_label)):
            if label is None:
                continue
            clipped = np.clip(label["box"], 0, self.crop_size)
            if (clipped[2:] > clipped[:2]).all():
                classes.append(category)
                boxes.append(clipped)
        instances = Instances((self.crop_size, self.crop_size))
        instances.gt_boxes = Boxes(_f32(np.array(boxes).reshape(-1, 4)))
        instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
        return instances

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
        has_mano = (
            annotation.get("mano_pose") is not None and annotation.get("mano_shape") is not None
        )
        joints3d = annotation.get("joints3d")
        has_joints3d = joints3d is not None and not (has_mano and self.joints3d_target == "mano")
        joints3d = (
            _array(joints3d, (NUM_JOINTS, 3), f"{name} joints3d") @ roll.T
            if has_joints3d
            else np.zeros((NUM_JOINTS, 3))
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
