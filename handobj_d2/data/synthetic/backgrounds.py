"""Procedural background textures, registered by name in ``BACKGROUND_REGISTRY``.

A background is ``fn(rng, width, height) -> (height, width, 3) float image in [0, 1]`` (RGB).
Domains (``domains.py``) pick their background families from this registry, so a labeled set
and a shifted unlabeled set can look different.
"""

import cv2
import numpy as np
from detectron2.utils.registry import Registry

BACKGROUND_REGISTRY = Registry("SYNTHETIC_BACKGROUND")
BACKGROUND_REGISTRY.__doc__ = """
Synthetic backgrounds: ``fn(rng, width, height) -> (H, W, 3) RGB float image in [0, 1]``.
"""


def _smooth_noise(rng, width, height, scale):
    """Zero-mean, unit-std noise (H, W) with features of about ``scale`` pixels."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), max(scale, 0.5))
    return noise / (noise.std() + 1e-9)


def _palette(rng, base, spread):
    """A colour (3,) near ``base`` (RGB in [0, 1]) with per-channel jitter ``spread``."""
    return np.clip(np.asarray(base) + rng.uniform(-spread, spread, 3), 0, 1)


@BACKGROUND_REGISTRY.register()
def wood(rng, width, height):
    """Warm wooden table top: grain stripes along a random direction, knotty noise."""
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    across = xx * np.cos(angle) + yy * np.sin(angle)
    warp = 6 * _smooth_noise(rng, width, height, 20)
    grain = np.sin((across + warp) / rng.uniform(3, 8)) * 0.5 + 0.5
    light = _palette(rng, (0.62, 0.45, 0.28), 0.08)
    dark = light * rng.uniform(0.55, 0.75)
    image = dark + (light - dark) * grain[..., None]
    return np.clip(image * (1 + 0.05 * _smooth_noise(rng, width, height, 2)[..., None]), 0, 1)


@BACKGROUND_REGISTRY.register()
def office(rng, width, height):
    """Indoor scene: a wall and a desk split by a horizon, soft blobs of clutter, vignetting."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    horizon = height * rng.uniform(0.3, 0.7) + (xx - width / 2) * np.tan(rng.uniform(-0.2, 0.2))
    wall = _palette(rng, (0.78, 0.76, 0.70), 0.08)
    desk = _palette(rng, (0.45, 0.40, 0.35), 0.1)
    image = np.where((yy < horizon)[..., None], wall, desk)
    for _ in range(int(rng.integers(3, 7))):
        centre = rng.uniform([0, 0], [width, height])
        axes = rng.uniform(0.05, 0.2, 2) * width
        blob = np.exp(-(((xx - centre[0]) / axes[0]) ** 2 + ((yy - centre[1]) / axes[1]) ** 2))
        image = image + (_palette(rng, (0.5, 0.5, 0.5), 0.4) - image) * blob[..., None] * 0.8
    vignette = 1 - 0.35 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)
    image = image * vignette[..., None]
    return np.clip(image * (1 + 0.03 * _smooth_noise(rng, width, height, 1)[..., None]), 0, 1)


@BACKGROUND_REGISTRY.register()
def fabric(rng, width, height):
    """Woven cloth: two crossing sinusoid weaves in a muted colour."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    period = rng.uniform(4, 9)
    weave = 0.5 + 0.25 * (np.sin(xx / period) + np.sin(yy / period))
    base = _palette(rng, (0.4, 0.42, 0.45), 0.2)
    image = base * (0.75 + 0.35 * weave[..., None])
    return np.clip(image * (1 + 0.08 * _smooth_noise(rng, width, height, 25)[..., None]), 0, 1)


@BACKGROUND_REGISTRY.register()
def checker(rng, width, height):
    """Saturated checkerboard under a random rotation (a strong shift from indoor scenes)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = rng.uniform(0, np.pi / 2)
    cell = rng.uniform(12, 40)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / cell
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / cell
    odd = ((np.floor(u) + np.floor(v)) % 2).astype(bool)
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return np.where(odd[..., None], a, b)


@BACKGROUND_REGISTRY.register()
def neon_blobs(rng, width, height):
    """Dark backdrop with large, saturated, blurred colour blobs (club lighting)."""
    image = np.full((height, width, 3), rng.uniform(0.02, 0.12))
    for channel in range(3):
        image[..., channel] += 0.45 * np.clip(_smooth_noise(rng, width, height, 30), 0, None)
    return np.clip(image, 0, 1)


@BACKGROUND_REGISTRY.register()
def outdoor(rng, width, height):
    """Sky gradient over foliage-like green noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    horizon = height * rng.uniform(0.25, 0.6)
    sky = _palette(rng, (0.55, 0.72, 0.92), 0.08) * (0.8 + 0.2 * yy / height)[..., None]
    leaves = np.clip(_smooth_noise(rng, width, height, 3) * 0.5 + 0.5, 0, 1)
    green = _palette(rng, (0.2, 0.45, 0.15), 0.08) * (0.6 + 0.6 * leaves[..., None])
    return np.clip(np.where((yy < horizon)[..., None], sky, green), 0, 1)


def render_background(name, rng, width, height):
    """A background image (H, W, 3) RGB float in [0, 1] of the registered family ``name``."""
    image = BACKGROUND_REGISTRY.get(name)(rng, width, height)
    if image.shape != (height, width, 3):
        raise ValueError(f"background {name!r} returned shape {image.shape}")
    return image
