"""Domains of the synthetic set: what differs between a labeled set and a shifted one.

A domain fixes the background families, the lighting ranges, the hand-shape (betas) range and
the skin tones. The semi-supervised experiment uses a labeled train set in one domain and
unlabeled videos plus a labeled evaluation set in another (``--domain shifted``);
``shifted_appearance`` and ``shifted_shape`` each take one half of that shift, to measure what
each costs a model.

Domains are functions returning a SyntheticDomain, registered by name in
SYNTHETIC_DOMAIN_REGISTRY (a new domain: ``@SYNTHETIC_DOMAIN_REGISTRY.register()`` on a function
named after it).
"""

from dataclasses import dataclass, replace

from detectron2.utils.registry import Registry

SYNTHETIC_DOMAIN_REGISTRY = Registry("SYNTHETIC_DOMAIN")
SYNTHETIC_DOMAIN_REGISTRY.__doc__ = """Synthetic domains by name: ``fn() -> SyntheticDomain``."""


@dataclass(frozen=True)
class SyntheticDomain:
    """Sampling ranges of one domain.

    backgrounds: names in backgrounds.BACKGROUND_REGISTRY, drawn uniformly.
    ambient, diffuse: ranges of the ambient and directional light intensities.
    light_tint: maximum per-channel deviation of the light colour from white.
    betas: range of every MANO shape coefficient (uniform).
    skin_tones: RGB colours in [0, 1]; a sample's skin is one of them, jittered.
    """

    name: str
    backgrounds: tuple
    ambient: tuple
    diffuse: tuple
    light_tint: float
    betas: tuple
    skin_tones: tuple


def get_domain(name):
    """The registered domain ``name``; a clear error listing the known ones otherwise."""
    if name not in SYNTHETIC_DOMAIN_REGISTRY:
        known = sorted(known for known, _ in SYNTHETIC_DOMAIN_REGISTRY)
        raise KeyError(f"unknown synthetic domain {name!r}; known: {known}")
    return SYNTHETIC_DOMAIN_REGISTRY.get(name)()


@SYNTHETIC_DOMAIN_REGISTRY.register()
def default():
    """Indoor scenes, neutral white light, average hand shapes, light skin tones."""
    return SyntheticDomain(
        name="default",
        backgrounds=("wood", "office", "fabric"),
        ambient=(0.35, 0.5),
        diffuse=(0.5, 0.7),
        light_tint=0.05,
        betas=(-1.0, 1.0),
        skin_tones=((0.91, 0.72, 0.6), (0.85, 0.64, 0.5), (0.95, 0.78, 0.68)),
    )


@SYNTHETIC_DOMAIN_REGISTRY.register()
def shifted():
    """Saturated patterns and outdoor scenes, dimmer coloured light, other hand shapes and darker
    skin tones: a domain shift for the unlabeled videos and the target evaluation set."""
    return SyntheticDomain(
        name="shifted",
        backgrounds=("checker", "neon_blobs", "outdoor"),
        ambient=(0.35, 0.5),
        diffuse=(0.5, 0.9),
        light_tint=0.2,
        betas=(-3.0, 3.0),
        skin_tones=((0.66, 0.46, 0.34), (0.55, 0.38, 0.27), (0.76, 0.56, 0.42)),
    )


@SYNTHETIC_DOMAIN_REGISTRY.register()
def shifted_appearance():
    """One half of the shift: its backgrounds, lights and skin with the default hand shapes."""
    return replace(shifted(), name="shifted_appearance", betas=default().betas)


@SYNTHETIC_DOMAIN_REGISTRY.register()
def shifted_shape():
    """The other half: the default scenes, lights and skin with the shifted hand shapes."""
    return replace(default(), name="shifted_shape", betas=shifted().betas)
