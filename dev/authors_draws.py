"""Give the authors' ``dataset/ho3d.HO3D.data_aug`` our augmentation's draws (comparison part d).

Their training sample draws, in this order (``dataset/ho3d.py`` and ``dataset_util.color_jitter``):

1. ``np.random.uniform(low=-1, high=1, size=2)``: centre offset, x centre_jittering x side;
2. ``np.random.randn()``: scale, ``clip(scale_jittering * z + 1, ...)``;
3. ``np.random.uniform(low=-max_rot, high=max_rot)``: rotation angle (radians);
4. ``random.random()``: blur radius, x blur_radius;
5. ``random.uniform(...)`` for brightness, contrast, saturation (those with a strength > 0),
   then ``random.uniform(-hue, hue)``;
6. ``random.shuffle(ops)``: the order of [brightness, saturation, hue, contrast].

:func:`fixed_draws` patches these five functions of ``numpy.random`` and ``random`` for the
duration of one ``dataset[i]`` so that each returns the value that reproduces a
``ReleasedAugmentation.sample`` dict (handobj_d2/data/augmentation.py) given to our mapper:
both sides then crop, scale, rotate, blur and colour alike. A call the list above does not
expect (another order, other bounds) raises, so that a change of their code is noticed rather
than compared with other draws.
"""

import contextlib
import random

import numpy as np

from handobj_d2.data.augmentation import RELEASED_COLOR_OPERATIONS


class _Replay:
    """The queued values of each patched function (see the module)."""

    def __init__(self, params, strengths):
        center, scale_jitter, max_rot, blur_max = strengths
        offset = np.asarray(params["center_offset"], dtype=np.float64)
        self.offset = offset / center if center > 0 else np.zeros(2)
        self.z = (params["scale"] - 1) / scale_jitter if scale_jitter > 0 else 0.0
        self.angle, self.max_rot = float(params["angle"]), max_rot
        self.blur = params["blur"] / blur_max if blur_max > 0 else 0.0
        color = params["color"]
        self.uniforms = [color[k] for k in ("brightness", "contrast", "saturation", "hue")
                         if k in color]  # fmt: skip
        self.order = list(params["color_order"])
        self.np_uniform_calls = 0

    def np_uniform(self, low=0.0, high=1.0, size=None):
        self.np_uniform_calls += 1
        if self.np_uniform_calls == 1 and (low, high, size) == (-1, 1, 2):
            return self.offset.copy()
        if self.np_uniform_calls == 2 and size is None and np.isclose(high, self.max_rot):
            return self.angle
        raise AssertionError(f"unexpected np.random.uniform({low}, {high}, {size}) call")

    def randn(self, *shape):
        if shape:
            raise AssertionError(f"unexpected np.random.randn{shape} call")
        return self.z

    def random(self):
        return self.blur

    def uniform(self, low, high):
        if not self.uniforms:
            raise AssertionError(f"unexpected random.uniform({low}, {high}) call")
        value = self.uniforms.pop(0)
        if not low - 1e-12 <= value <= high + 1e-12:
            raise AssertionError(f"fixed draw {value} outside random.uniform({low}, {high})")
        return value

    def shuffle(self, ops):
        """Reorder ``ops`` (in RELEASED_COLOR_OPERATIONS order, those present) to ``order``."""
        present = [name for name in RELEASED_COLOR_OPERATIONS if name in self.order]
        if len(ops) != len(present):
            raise AssertionError(f"random.shuffle of {len(ops)} items, expected {len(present)}")
        by_name = dict(zip(present, list(ops)))
        ops[:] = [by_name[name] for name in self.order]


@contextlib.contextmanager
def fixed_draws(params, strengths):
    """Within the block their random calls return ``params``' draws; ``strengths``:
    (center_jittering, scale_jittering, max_rot, blur_radius) their dataset was built with."""
    replay = _Replay(params, strengths)
    patched = [(np.random, "uniform", replay.np_uniform), (np.random, "randn", replay.randn),
               (random, "random", replay.random), (random, "uniform", replay.uniform),
               (random, "shuffle", replay.shuffle)]  # fmt: skip
    saved = [(module, name, getattr(module, name)) for module, name, _ in patched]
    try:
        for module, name, value in patched:
            setattr(module, name, value)
        yield replay
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
    if replay.uniforms:
        raise AssertionError(f"{len(replay.uniforms)} colour draws were not used")
