"""Training augmentations of :class:`HandObjectDatasetMapper`, chosen by INPUT.HANDOBJ.AUGMENTATION
from HANDOBJ_AUGMENTATION_REGISTRY.

An augmentation draws all of a sample's random values at once (:meth:`sample`, a dict, so that a
caller can also give them: the comparison with the authors' code fixes both sides' draws) and
then applies them:

* ``rotation(K, angle)``: the pixel map (3, 3 affine) of the in-plane rotation whose 3D
  counterpart is the camera roll ``geometry.roll_matrix(angle)``;
* ``crop_box(centre, side, params)``: the jittered square crop around an unjittered crop of
  ``side`` pixels centred at ``centre`` (pixels of the original image);
* ``render(image, image_to_input, size, params)``: the ``size`` x ``size`` model input of a BGR
  uint8 image under the affine ``image_to_input`` (the one the labels go through), with the
  photometric changes;
* ``warp_mask(mask, image_to_input, width, height, size)``: the object mask (h, w) at any
  resolution covering the ``width`` x ``height`` image -> (size, size) uint8 0 / 1 in
  model-input pixels.

"default": uniform draws, OpenCV (pixel-centre convention, bilinear), colour jitter then blur.
"released": the authors' ``dataset/ho3d.py`` ``data_aug`` and ``dataset/dataset_util.py``:
scale 1 + s N(0, 1) clipped to [1 - s, 1 + s], centre moved by U(-c, c) x the unjittered side,
a pure rotation about the principal point, PIL's affine resampling (pixel-corner convention,
nearest), PIL's Gaussian blur, then torchvision's brightness / saturation / hue / contrast
adjustments in a shuffled order.
"""

import numpy as np
import torchvision.transforms.functional as TF
from detectron2.utils.registry import Registry
from PIL import Image, ImageFilter

from ..geometry import roll_matrix
from . import transforms as T

HANDOBJ_AUGMENTATION_REGISTRY = Registry("HANDOBJ_AUGMENTATION")
HANDOBJ_AUGMENTATION_REGISTRY.__doc__ = """Training augmentations (INPUT.HANDOBJ.AUGMENTATION):
classes built with ``(rotation, scale_jitter, center_jitter, color_jitter, blur_max_sigma)``."""

# The released code's colour operations, in the order its list has them before shuffling.
RELEASED_COLOR_OPERATIONS = ("brightness", "saturation", "hue", "contrast")


# The config's short names of the registered classes.
AUGMENTATION_NAMES = {"default": "DefaultAugmentation", "released": "ReleasedAugmentation"}


def build_augmentation(name, **kwargs):
    """The augmentation registered as ``name`` (a class name or a short name of
    ``AUGMENTATION_NAMES``) with the mapper's strengths (module docstring)."""
    try:
        cls = HANDOBJ_AUGMENTATION_REGISTRY.get(AUGMENTATION_NAMES.get(name, name))
    except KeyError:
        known = sorted(AUGMENTATION_NAMES) + sorted(n for n, _ in HANDOBJ_AUGMENTATION_REGISTRY)
        raise ValueError(
            f"INPUT.HANDOBJ.AUGMENTATION must be one of {known}, got {name!r}"
        ) from None
    return cls(**kwargs)


@HANDOBJ_AUGMENTATION_REGISTRY.register()
class DefaultAugmentation:
    """Uniform draws; OpenCV warp (bilinear, pixel centres); colour jitter, then blur."""

    def __init__(self, rotation, scale_jitter, center_jitter, color_jitter, blur_max_sigma):
        """rotation: radians, angle ~ U(-rotation, rotation); scale_jitter, center_jitter: crop
        side x U(1 - s, 1 + s), centre + U(-c, c) x that side; color_jitter: brightness,
        contrast, saturation, hue strengths; blur_max_sigma: pixels, sigma ~ U(0, max)."""
        self.max_angle = float(rotation)
        self.scale_jitter = float(scale_jitter)
        self.center_jitter = float(center_jitter)
        self.color_jitter = tuple(float(x) for x in color_jitter)
        self.blur_max_sigma = float(blur_max_sigma)

    def sample(self, rng):
        """Random values of one sample: ``angle`` (rad), ``scale`` (side factor),
        ``center_offset`` (2,) (fraction of the side), ``color`` (brightness, contrast,
        saturation, hue) and ``blur`` (sigma, px). ``rng``: a numpy Generator or np.random."""
        angle = rng.uniform(-self.max_angle, self.max_angle)
        scale = rng.uniform(1 - self.scale_jitter, 1 + self.scale_jitter)
        offset = rng.uniform(-self.center_jitter, self.center_jitter, 2)
        color = T.sample_color_jitter(self.color_jitter, rng)
        blur = rng.uniform(0.0, self.blur_max_sigma)
        return {"angle": angle, "scale": scale, "center_offset": offset, "color": color,
                "blur": blur}  # fmt: skip

    def rotation(self, K, angle):
        """The camera roll's exact pixel map ``K @ roll_matrix(angle) @ K^-1``."""
        return T.roll_homography(K, angle)

    def crop_box(self, centre, side, params):
        """Side x ``scale``, centre moved by ``center_offset`` x the jittered side."""
        side = side * params["scale"]
        centre = np.asarray(centre, dtype=np.float64) + np.asarray(params["center_offset"]) * side
        return np.concatenate([centre - side / 2, centre + side / 2])

    def render(self, image, image_to_input, size, params):
        out = T.warp_image(image, image_to_input, size)
        out = T.color_jitter(out, *params["color"])
        return T.gaussian_blur(out, params["blur"])

    def warp_mask(self, mask, image_to_input, width, height, size):
        return T.warp_mask(mask, image_to_input, width, height, size)


@HANDOBJ_AUGMENTATION_REGISTRY.register()
class ReleasedAugmentation(DefaultAugmentation):
    """The authors' training augmentation (module docstring), with PIL and torchvision."""

    def sample(self, rng):
        """As :meth:`DefaultAugmentation.sample` with the released distributions and draw order
        (centre offset, scale, angle, blur, colours, colour order); ``color`` holds the
        operations' factors by name and ``color_order`` their order."""
        offset = rng.uniform(-1.0, 1.0, 2) * self.center_jitter
        s = self.scale_jitter
        scale = float(np.clip(s * rng.standard_normal() + 1, 1 - s, 1 + s))
        angle = rng.uniform(-self.max_angle, self.max_angle)
        blur = rng.uniform(0.0, 1.0) * self.blur_max_sigma
        b, c, sat, hue = self.color_jitter
        color = {}
        for name, strength in (("brightness", b), ("contrast", c), ("saturation", sat)):
            if strength > 0:
                color[name] = rng.uniform(max(0.0, 1 - strength), 1 + strength)
        if hue > 0:
            color["hue"] = rng.uniform(-hue, hue)
        order = [name for name in RELEASED_COLOR_OPERATIONS if name in color]
        order = [order[i] for i in rng.permutation(len(order))]
        return {"angle": angle, "scale": scale, "center_offset": offset, "color": color,
                "color_order": order, "blur": blur}  # fmt: skip

    def rotation(self, K, angle):
        """A pure rotation of the pixels about the principal point, as released (the roll's
        exact map when fx = fy; the 3D labels roll by ``roll_matrix(angle)`` either way)."""
        pivot = np.array([[1.0, 0.0, K[0, 2]], [0.0, 1.0, K[1, 2]], [0.0, 0.0, 1.0]])
        return pivot @ roll_matrix(angle) @ np.linalg.inv(pivot)

    def crop_box(self, centre, side, params):
        """Centre moved by ``center_offset`` x the unjittered side, then side x ``scale``."""
        centre = np.asarray(centre, dtype=np.float64) + np.asarray(params["center_offset"]) * side
        side = side * params["scale"]
        return np.concatenate([centre - side / 2, centre + side / 2])

    def render(self, image, image_to_input, size, params):
        out = _pil_warp(image[..., ::-1], image_to_input, size)
        out = out.filter(ImageFilter.GaussianBlur(params["blur"]))
        adjust = {"brightness": TF.adjust_brightness, "saturation": TF.adjust_saturation,
                  "hue": TF.adjust_hue, "contrast": TF.adjust_contrast}  # fmt: skip
        for name in params["color_order"]:
            out = adjust[name](out, params["color"][name])
        return np.ascontiguousarray(np.asarray(out)[..., ::-1])

    def warp_mask(self, mask, image_to_input, width, height, size):
        mask = T.binary_mask(mask)
        # Pixel-corner coordinates scale without an offset.
        to_image = np.diag([width / mask.shape[1], height / mask.shape[0], 1.0])
        return np.asarray(_pil_warp(mask, image_to_input @ to_image, size))


def _pil_warp(array, image_to_input, size):
    """PIL image of ``size`` x ``size``: ``array`` (H, W[, 3]) uint8 resampled as PIL's
    ``Image.transform(AFFINE)`` does with the inverse of ``image_to_input`` (output pixel corner
    coordinates (x + 0.5, y + 0.5) mapped back, the input pixel holding the point taken; zeros
    outside)."""
    inverse = np.linalg.inv(image_to_input)
    return Image.fromarray(np.ascontiguousarray(array)).transform(
        (size, size), Image.AFFINE, tuple(inverse[:2].reshape(-1)), resample=Image.NEAREST
    )
