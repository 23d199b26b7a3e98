"""Hand/object segmentation files: one encoder and one decoder per on-disk format.

A record names its file with ``segmentation_file`` and its format with ``segmentation_format``
(a key of SEGMENTATION_DECODERS). Decoders return ``(hand_mask, object_mask)``, two (H, W)
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

CHANNEL_THRESHOLD = 127


def encode_ho3d(hand_mask, object_mask):
    """(H, W) bool masks -> (H, W, 3) uint8 RGB image in HO3D's encoding."""
    hand_mask = np.asarray(hand_mask, dtype=bool)
    object_mask = np.asarray(object_mask, dtype=bool) & ~hand_mask
    image = np.zeros(hand_mask.shape + (3,), dtype=np.uint8)
    image[hand_mask, 2] = 255
    image[object_mask, 1] = 255
    return image


def decode_ho3d(path, size=None):
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


SEGMENTATION_ENCODERS = {"ho3d": encode_ho3d}
SEGMENTATION_DECODERS = {"ho3d": decode_ho3d}
