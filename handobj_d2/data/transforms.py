"""Image and point operations of :class:`HandObjectDatasetMapper` (numpy + OpenCV, per sample).

Every 2D map here is a homogeneous affine (3, 3) on pixel coordinates (OpenCV convention:
integer coordinates are pixel centres), so the image, its points, boxes and masks go through
the same matrix and one ``cv2.warpAffine`` per image.

The in-plane rotation is a camera roll: a rotation ``Rz`` about the optical axis. 3D points in
the camera frame become ``Rz @ p``; the intrinsics K stay the same, and pixels move by
``K @ Rz @ K^-1`` (an affine map: the principal point stays fixed; a pure rotation about it when
fx = fy). Projections therefore stay exact: ``project(Rz p, K) = (K Rz K^-1) project(p, K)``.
"""

import cv2
import numpy as np

from ..geometry import roll_matrix


def roll_homography(K, angle):
    """Pixel map (3, 3 affine) of a camera roll by ``angle``: ``K @ roll_matrix(angle) @ K^-1``."""
    K = np.asarray(K, dtype=np.float64)
    return K @ roll_matrix(angle) @ np.linalg.inv(K)


def apply_affine(points, matrix):
    """Pixels (N, 2) through a homogeneous affine (3, 3) -> (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def is_axis_aligned(matrix, eps=1e-12):
    """Whether an affine (3, 3) only scales and translates (maps boxes to boxes exactly)."""
    return abs(matrix[0, 1]) < eps and abs(matrix[1, 0]) < eps


def _corners(box):
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], dtype=np.float64)


def transform_box(box, matrix, inner_points=None, outer_points=None):
    """Box [x1, y1, x2, y2] px after an affine (3, 3).

    Scale + translation maps a box exactly. A rotation turns it into a tilted rectangle whose
    axis-aligned bounds are looser than the thing the box was drawn around, so when known:

    * ``inner_points`` (N, 2), points inside the box that it was drawn around (the hand's 2D
      joints): the bounds of the transformed points, grown by the box's mean margin around
      them (scaled like the image);
    * ``outer_points`` (N, 2), points whose convex hull contains the object (its projected 3D
      bounding box): the bounds of the transformed corners are cut to those of these points.
    """
    box = np.asarray(box, dtype=np.float64)
    if is_axis_aligned(matrix):
        corners = apply_affine(box.reshape(2, 2), matrix)
        return np.concatenate([corners.min(0), corners.max(0)])
    if inner_points is not None:
        inner_points = np.asarray(inner_points, dtype=np.float64)
        tight = np.concatenate([inner_points.min(0), inner_points.max(0)])
        margin = np.maximum(np.concatenate([tight[:2] - box[:2], box[2:] - tight[2:]]), 0).mean()
        scale = np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
        moved = apply_affine(inner_points, matrix)
        return np.concatenate([moved.min(0) - margin * scale, moved.max(0) + margin * scale])
    corners = apply_affine(_corners(box), matrix)
    bounds = np.concatenate([corners.min(0), corners.max(0)])
    if outer_points is not None:
        moved = apply_affine(outer_points, matrix)
        cut = np.concatenate(
            [np.maximum(bounds[:2], moved.min(0)), np.minimum(bounds[2:], moved.max(0))]
        )
        if (cut[2:] > cut[:2]).all():
            bounds = cut
    return bounds


def warp_image(image, matrix, size, interpolation=cv2.INTER_LINEAR):
    """``size`` x ``size`` output of ``image`` (H, W[, C]) under the affine (3, 3); zeros outside."""
    return cv2.warpAffine(
        image,
        np.ascontiguousarray(matrix[:2], dtype=np.float64),
        (size, size),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def binary_mask(mask):
    """A mask (h, w) of bools or numbers -> contiguous uint8 0 / 1."""
    mask = np.asarray(mask)
    mask = mask.view(np.uint8) if mask.dtype == bool else (mask > 0).astype(np.uint8)
    return np.ascontiguousarray(mask)


def warp_mask(mask, image_to_input, width, height, size):
    """Object mask (h, w) at any resolution covering a ``width`` x ``height`` image ->
    (size, size) uint8 in model-input pixels under the image's affine ``image_to_input``
    (nearest neighbour, pixel-centre convention)."""
    mask = binary_mask(mask)
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    # Mask pixel centres -> image pixel centres (both with integer centres).
    to_image = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return warp_image(mask, image_to_input @ to_image, size, cv2.INTER_NEAREST)


def sample_color_jitter(strengths, rng):
    """Factors (brightness, contrast, saturation, hue) for :func:`color_jitter` from strengths
    (b, c, s, h) as in torchvision's ColorJitter: the first three uniform in [1 - x, 1 + x]
    (floored at 0), the hue shift uniform in [-h, h] turns of the colour wheel."""
    b, c, s, h = (float(x) for x in strengths)
    factors = [max(0.0, rng.uniform(1 - x, 1 + x)) for x in (b, c, s)]
    return (*factors, float(rng.uniform(-h, h)))


# Grey level of a BGR pixel (ITU-R BT.601, OpenCV's BGR2GRAY weights).
GREY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299])


def color_jitter(image, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0):
    """Colour jitter of a BGR uint8 image (H, W, 3), in this order: brightness (scale by
    ``brightness``), contrast (blend with the mean grey level), saturation (blend with the
    pixel's grey level), hue (rotation of the HSV hue by ``hue`` turns). The first three are
    linear and run as one affine colour map (``cv2.transform``) saturating to [0, 255] once;
    the hue rotation goes through 8-bit HSV. Factors 1, 1, 1, 0 leave the image unchanged."""
    out = image
    if (brightness, contrast, saturation) != (1.0, 1.0, 1.0):
        mean_grey = float(np.dot(cv2.mean(image)[:3], GREY_WEIGHTS_BGR))
        to_grey = np.ones((3, 1)) * GREY_WEIGHTS_BGR[None]
        matrix = contrast * brightness * (saturation * np.eye(3) + (1 - saturation) * to_grey)
        offset = np.full((3, 1), (1 - contrast) * brightness * mean_grey)
        out = cv2.transform(out, np.hstack([matrix, offset]))
    shift = int(round(hue * 256)) % 256
    if shift:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV_FULL)
        hsv[..., 0] += np.uint8(shift)  # uint8 arithmetic wraps around the colour wheel
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL)
    return out


def gaussian_blur(image, sigma):
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel of 3 sigma each side);
    ``sigma`` 0 returns the image."""
    if sigma <= 0:
        return image
    radius = max(1, int(np.ceil(3 * sigma)))
    return cv2.GaussianBlur(image, (2 * radius + 1, 2 * radius + 1), sigma)


def rotate_axis_angle(axis_angle, rotation):
    """Axis-angle (3,) of ``rotation @ R(axis_angle)`` (numpy, via Rodrigues)."""
    matrix = cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))[0]
    return cv2.Rodrigues(rotation @ matrix)[0].reshape(3)
