"""Contextual reasoning (CR): object features attend to the hand-object intersection.

Both variants take ``query`` (object ROI features) and ``key`` (intersection ROI features),
each (N, C, R, R), and return enhanced object features of the same shape. The intersection
features are zero where the hand and object boxes do not intersect.

* "nonlocal" (supplement): a non-local block. 1x1 convs reduce query and key to
  ``REDUCED_CHANNELS``; their (R*R) x (R*R) similarity, softmax-normalised, is the synergy map;
  it mixes a third 1x1 embedding of the key, lifted back to C channels by a 1x1 conv + BN
  (zero-initialised, so the block starts as the identity) and added to the query.
* "transformer" (released code): 1x1 conv query/key/value at C channels, scaled dot-product
  attention with ``NUM_HEADS`` heads added to the query, then LayerNorm + MLP (GELU) residual;
  ``DEPTH`` such blocks.
* "none": the object features unchanged (ablation).

The modules are registered by class name in CONTEXTUAL_REASONING_REGISTRY; MODEL.HANDOBJ.CR.NAME
takes a class name or one of the short names above (``CR_NAMES``).
"""

from detectron2.config import configurable
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

CONTEXTUAL_REASONING_REGISTRY = Registry("CONTEXTUAL_REASONING")
CONTEXTUAL_REASONING_REGISTRY.__doc__ = """
Contextual reasoning modules (classes, by name), built as ``cls(cfg, channels)``; the module's
``forward(query, key)`` maps object (query) and intersection (key) features (N, C, R, R) to
(N, C, R, R).
"""

# The config's short names of the registered classes.
CR_NAMES = {"nonlocal": "NonLocalCR", "transformer": "TransformerCR", "none": "NoCR"}


def build_contextual_reasoning(cfg, channels):
    """The CR module named by MODEL.HANDOBJ.CR.NAME for features with ``channels`` channels."""
    name = cfg.MODEL.HANDOBJ.CR.NAME
    return CONTEXTUAL_REASONING_REGISTRY.get(CR_NAMES.get(name, name))(cfg, channels)


def _flatten(x):
    """(N, C, H, W) -> (N, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


@CONTEXTUAL_REASONING_REGISTRY.register()
class NonLocalCR(nn.Module):
    @configurable
    def __init__(self, channels, *, reduced_channels=128):
        """channels: feature channels C; reduced_channels: query/key/embedding width."""
        super().__init__()
        reduced = reduced_channels
        self.reduce_query = nn.Conv2d(channels, reduced, 1)
        self.reduce_key = nn.Conv2d(channels, reduced, 1)
        self.embed_key = nn.Conv2d(channels, reduced, 1)
        self.lift = nn.Sequential(nn.Conv2d(reduced, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.lift[1].weight)
        nn.init.zeros_(self.lift[1].bias)

    @classmethod
    def from_config(cls, cfg, channels):
        return {"channels": channels, "reduced_channels": cfg.MODEL.HANDOBJ.CR.REDUCED_CHANNELS}

    def synergy(self, query, key):
        """Softmax-normalised similarity of every query cell to every key cell (N, R*R, R*R)."""
        similarity = _flatten(self.reduce_query(query)) @ self.reduce_key(key).flatten(2)
        return similarity.softmax(-1)

    def forward(self, query, key):
        n, _, h, w = query.shape
        mixed = self.synergy(query, key) @ _flatten(self.embed_key(key))  # (N, R*R, reduced)
        mixed = mixed.transpose(1, 2).reshape(n, mixed.shape[-1], h, w)
        return query + self.lift(mixed)


class _AttentionBlock(nn.Module):
    """Cross-attention of query cells to key cells, then a LayerNorm + MLP, both residual."""

    def __init__(self, channels, num_heads, mlp_ratio):
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"MODEL.HANDOBJ.CR.NUM_HEADS={num_heads} must divide the {channels} channels"
            )
        self.num_heads = num_heads
        self.encode_query = nn.Conv2d(channels, channels, 1)
        self.encode_key = nn.Conv2d(channels, channels, 1)
        self.encode_value = nn.Conv2d(channels, channels, 1)
        self.norm = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def _heads(self, x):
        """(N, C, H, W) -> (N, heads, H*W, C / heads)."""
        n, c, h, w = x.shape
        return x.reshape(n, self.num_heads, c // self.num_heads, h * w).transpose(2, 3)

    def forward(self, query, key):
        n, c, h, w = query.shape
        attended = F.scaled_dot_product_attention(
            self._heads(self.encode_query(query)),
            self._heads(self.encode_key(key)),
            self._heads(self.encode_value(key)),
        )  # (N, heads, H*W, C / heads)
        x = _flatten(query) + attended.transpose(1, 2).reshape(n, h * w, c)
        x = x + self.mlp(self.norm(x))
        return x.transpose(1, 2).reshape(n, c, h, w)


@CONTEXTUAL_REASONING_REGISTRY.register()
class TransformerCR(nn.Module):
    @configurable
    def __init__(self, channels, *, num_heads=1, mlp_ratio=4, depth=1):
        """channels: feature channels C; ``depth`` attention blocks of ``num_heads`` heads and
        an MLP of ``mlp_ratio`` x C hidden units."""
        super().__init__()
        self.blocks = nn.ModuleList(
            _AttentionBlock(channels, num_heads, mlp_ratio) for _ in range(depth)
        )

    @classmethod
    def from_config(cls, cfg, channels):
        cr = cfg.MODEL.HANDOBJ.CR
        return {
            "channels": channels,
            "num_heads": cr.NUM_HEADS,
            "mlp_ratio": cr.MLP_RATIO,
            "depth": cr.DEPTH,
        }

    def forward(self, query, key):
        for block in self.blocks:
            query = block(query, key)
        return query


@CONTEXTUAL_REASONING_REGISTRY.register()
class NoCR(nn.Module):
    @configurable
    def __init__(self, channels):
        super().__init__()

    @classmethod
    def from_config(cls, cfg, channels):
        return {"channels": channels}

    def forward(self, query, key):
        return query
