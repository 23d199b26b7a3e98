"""Hand/object segmentation files: a decoder per on-disk format, and HO3D's encoder.

A record names its file with ``segmentation_file`` and its format with ``segmentation_format``,
the name of a decoder in SEGMENTATION_DECODER_REGISTRY (``decode_segmentation``). Decoders return ``(hand_mask, object_mask)``, two (H, W)
bool arrays; given ``size=(width, height)`` they resize (nearest) to it, because some datasets
store segmentation at a lower resolution than their images (HO3D v2: 320x240 JPEG).

Formats:
    "ho3d": a colour image, hand in the blue channel and object in the green channel (HO3D's
        seg/*.png|jpg). A channel above 127 marks the pixel (JPEG-safe); the encoder writes pure
        blue (0, 0, 255 RGB) for the hand, pure green for the object, the hand on top.
"""

import os

import cv2
import numpy as np
from detectron2.utils.registry import Registry

SEGMENTATION_DECODER_REGISTRY = Registry("SEGMENTATION_DECODER")
SEGMENTATION_DECODER_REGISTRY.__doc__ = """Segmentation decoders by format name (a record's
``segmentation_format``): ``fn(path, size=None) -> (hand_mask, object_mask)``."""

CHANNEL_THRESHOLD = 127


def encode_ho3d(hand_mask, object_mask):
    """(H, W) bool masks -> (H, W, 3) uint8 RGB image in HO3D's encoding."""
    hand_mask = np.asarray(hand_mask, dtype=bool)
    object_mask = np.asarray(object_mask, dtype=bool) & ~hand_mask
    image = np.zeros(hand_mask.shape + (3,), dtype=np.uint8)
    image[hand_mask, 2] = 255
    image[object_mask, 1] = 255
    return image


@SEGMENTATION_DECODER_REGISTRY.register()
def ho3d(path, size=None):
    """HO3D segmentation file -> (hand_mask, object_mask), (H, W) bool each."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"segmentation file not found: {path}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot decode the segmentation image (corrupt or not an image)")
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        image = cv2.resize(image, tuple(int(s) for s in size), interpolation=cv2.INTER_NEAREST)
    blue, green = image[..., 0], image[..., 1]  # OpenCV reads BGR
    return blue > CHANNEL_THRESHOLD, green > CHANNEL_THRESHOLD



def decode_segmentation(path, fmt="ho3d", size=None):
    """The segmentation file ``path`` in format ``fmt`` -> (hand_mask, object_mask), (H, W) bool
    each; a ValueError naming the file for an unknown format."""
    if fmt not in SEGMENTATION_DECODER_REGISTRY:
        known = sorted(name for name, _ in SEGMENTATION_DECODER_REGISTRY)
        raise ValueError(f"{path}: unknown segmentation_format {fmt!r} (known: {known})")
    return SEGMENTATION_DECODER_REGISTRY.get(fmt)(path, size)
