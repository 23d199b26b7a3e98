"""Domains of the synthetic set: what differs between a labeled set and a shifted one.

A domain fixes the background families, the lighting ranges, the hand-shape (betas) range and
the skin tones. The semi-supervised experiment uses a labeled train set in one domain and
unlabeled videos plus a labeled evaluation set in another (``--domain shifted``);
``shifted_appearance`` and ``shifted_shape`` each take one half of that shift, to measure what
each costs a model.
"""

from dataclasses import dataclass, replace


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


SYNTHETIC_DOMAINS = {}


def register_domain(domain):
    """Add a SyntheticDomain to SYNTHETIC_DOMAINS (by its name) and return it."""
    if domain.name in SYNTHETIC_DOMAINS:
        raise ValueError(f"synthetic domain {domain.name!r} is already registered")
    SYNTHETIC_DOMAINS[domain.name] = domain
    return domain


def get_domain(name):
    """The registered domain ``name``; a clear error listing the known ones otherwise."""
    if name not in SYNTHETIC_DOMAINS:
        raise KeyError(f"unknown synthetic domain {name!r}; known: {sorted(SYNTHETIC_DOMAINS)}")
    return SYNTHETIC_DOMAINS[name]


# Indoor scenes, neutral white light, average hand shapes, light skin tones.
register_domain(
    SyntheticDomain(
        name="default",
        backgrounds=("wood", "office", "fabric"),
        ambient=(0.35, 0.5),
        diffuse=(0.5, 0.7),
        light_tint=0.05,
        betas=(-1.0, 1.0),
        skin_tones=((0.91, 0.72, 0.6), (0.85, 0.64, 0.5), (0.95, 0.78, 0.68)),
    )
)
# Saturated patterns and outdoor scenes, dimmer coloured light, other hand shapes and darker
# skin tones: a domain shift for the unlabeled videos and the target evaluation set.
register_domain(
    SyntheticDomain(
        name="shifted",
        backgrounds=("checker", "neon_blobs", "outdoor"),
        ambient=(0.35, 0.5),
        diffuse=(0.5, 0.9),
        light_tint=0.2,
        betas=(-3.0, 3.0),
        skin_tones=((0.66, 0.46, 0.34), (0.55, 0.38, 0.27), (0.76, 0.56, 0.42)),
    )
)
# The two halves of the shift: its backgrounds, lights and skin with the default hand shapes, and
# the default scenes with its hand shapes.
register_domain(
    replace(SYNTHETIC_DOMAINS["shifted"], name="shifted_appearance",
            betas=SYNTHETIC_DOMAINS["default"].betas)
)  # fmt: skip
register_domain(
    replace(SYNTHETIC_DOMAINS["default"], name="shifted_shape",
            betas=SYNTHETIC_DOMAINS["shifted"].betas)
)  # fmt: skip
