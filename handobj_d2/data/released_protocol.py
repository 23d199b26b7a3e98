"""The boxes and crop of the authors' released code (Semi-Hand-Object, ``dataset/ho3d.py``
``data_crop`` and ``data_aug``, ``dataset/dataset_util.py``), selected by
``INPUT.HANDOBJ.TEST_BOXES "released"`` (evaluation) and ``INPUT.HANDOBJ.TRAIN_BOXES "released"``
(training) for their model (configs/HO3D-v2/handobj_R50_FPN_released.yaml).

Evaluation (:func:`released_test_boxes`):

* hand box: the annotated hand box (HO3D's ``handBoundingBox``) enlarged 1.1x;
* object box: the box of the 21 projected control points (ground-truth pose), not enlarged;
* crop: the square whose side is the longer side of the union of the hand box and the
  control-point box, each enlarged 1.5x, after clipping that union to the image.

Training: the crop (:func:`released_crop`) is the same with the box of the 2D hand joints in
place of the annotated hand box (then jittered and rotated by the augmentation); after the crop
(:func:`released_train_boxes`) the hand box is the box of the cropped 2D joints enlarged 1.1x
and the object box that of the cropped control points.

Every box is scaled about its centre rounded toward zero to an integer pixel, as theirs.
All boxes [x1, y1, x2, y2] in pixels of the original image.
"""

import numpy as np

HAND_BOX_SCALE = 1.1
CROP_BOX_SCALE = 1.5


def scaled_points_box(points, scale):
    """Box of ``points`` (N, 2) scaled ``scale`` times about its integer-truncated centre."""
    points = np.asarray(points, dtype=np.float64)
    low, high = points.min(0), points.max(0)
    centre = np.trunc((low + high) / 2)
    half = (high - low) * scale / 2
    return np.concatenate([centre - half, centre + half])


def released_crop(hand_points, control_points2d, width, height):
    """(centre (2,), side) of the released square crop around ``hand_points`` (N, 2) and
    ``control_points2d`` (21, 2) in a ``width`` x ``height`` image: the union of both boxes
    enlarged 1.5x, clipped to the image; centre truncated to an integer pixel."""
    both = np.stack(
        [
            scaled_points_box(hand_points, CROP_BOX_SCALE),
            scaled_points_box(control_points2d, CROP_BOX_SCALE),
        ]
    ).reshape(-1, 2)
    low = np.maximum(both.min(0), 0.0)
    high = np.minimum(both.max(0), [width, height])
    return np.trunc((low + high) / 2), (high - low).max()


def released_test_boxes(hand_box, control_points2d, width, height):
    """(hand box, object box, crop box) of the released evaluation for an image of
    ``width`` x ``height`` pixels; ``crop_box`` is square."""
    corners = np.asarray(hand_box, dtype=np.float64).reshape(2, 2)
    centre, side = released_crop(corners, control_points2d, width, height)
    hand = scaled_points_box(corners, HAND_BOX_SCALE)
    obj = scaled_points_box(control_points2d, 1.0)
    return hand, obj, np.concatenate([centre - side / 2, centre + side / 2])


def released_train_boxes(joints2d, control_points2d):
    """(hand box, object box) of released training from the 2D joints (21, 2) and control
    points (21, 2) in model-input pixels (after the crop)."""
    return scaled_points_box(joints2d, HAND_BOX_SCALE), scaled_points_box(control_points2d, 1.0)
