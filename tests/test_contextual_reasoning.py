"""Contextual reasoning variants against direct numpy implementations of their definitions
(the paper's supplement and the released code)."""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from scipy.special import erf

from handobj_d2.config import add_handobj_config
from handobj_d2.modeling.contextual_reasoning import (
    CONTEXTUAL_REASONING_REGISTRY,
    CR_NAMES,
    NoCR,
    NonLocalCR,
    TransformerCR,
    build_contextual_reasoning,
)

C, R, N = 8, 4, 2  # channels, grid side, samples


def _cfg(name, **cr):
    cfg = add_handobj_config(get_cfg())
    cfg.MODEL.HANDOBJ.CR.NAME = name
    for key, value in cr.items():
        cfg.MODEL.HANDOBJ.CR[key] = value
    return cfg


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, C, R, R, generator=g), torch.randn(N, C, R, R, generator=g)


def _np(t):
    return t.detach().double().numpy()


def _conv1x1(x, conv):
    """x (N, HW, Cin) through a 1x1 conv -> (N, HW, Cout)."""
    return x @ _np(conv.weight)[:, :, 0, 0].T + _np(conv.bias)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _cells(x):
    return _np(x).reshape(N, C, R * R).transpose(0, 2, 1)


def _to_map(x):
    return x.transpose(0, 2, 1).reshape(N, C, R, R)


def test_registry_builds_each_variant():
    assert {"NonLocalCR", "TransformerCR", "NoCR"} <= {
        name for name, _ in CONTEXTUAL_REASONING_REGISTRY
    }
    assert set(CR_NAMES) == {"nonlocal", "transformer", "none"}
    assert isinstance(build_contextual_reasoning(_cfg("nonlocal"), C), NonLocalCR)
    assert isinstance(build_contextual_reasoning(_cfg("transformer"), C), TransformerCR)
    assert isinstance(build_contextual_reasoning(_cfg("none"), C), NoCR)
    assert isinstance(build_contextual_reasoning(_cfg("NonLocalCR"), C), NonLocalCR)
    with pytest.raises(KeyError):
        build_contextual_reasoning(_cfg("attention"), C)


def test_nonlocal_matches_its_definition():
    torch.manual_seed(0)
    module = NonLocalCR(_cfg("nonlocal", REDUCED_CHANNELS=4), C).eval()
    query, key = _inputs()
    # Zero-initialised BN: the block starts as the identity.
    assert torch.equal(module(query, key), query)
    bn = module.lift[1]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    q, k = _cells(query), _cells(key)
    theta = _conv1x1(q, module.reduce_query)  # (N, 16, 4)
    phi = _conv1x1(k, module.reduce_key)
    g = _conv1x1(k, module.embed_key)
    synergy = _softmax(theta @ phi.transpose(0, 2, 1))  # (N, 16, 16)
    lifted = _conv1x1(synergy @ g, module.lift[0])
    normed = (lifted - _np(bn.running_mean)) / np.sqrt(_np(bn.running_var) + bn.eps)
    expected = _np(query) + _to_map(normed * _np(bn.weight) + _np(bn.bias))
    np.testing.assert_allclose(_np(module(query, key)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(module.synergy(query, key)), synergy, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("heads", [1, 2])
def test_transformer_matches_its_definition(heads):
    torch.manual_seed(1)
    module = TransformerCR(_cfg("transformer", NUM_HEADS=heads, MLP_RATIO=4, DEPTH=1), C).eval()
    block = module.blocks[0]
    query, key = _inputs(1)
    q, k = _cells(query), _cells(key)
    Q = _conv1x1(q, block.encode_query).reshape(N, R * R, heads, C // heads)
    K = _conv1x1(k, block.encode_key).reshape(N, R * R, heads, C // heads)
    V = _conv1x1(k, block.encode_value).reshape(N, R * R, heads, C // heads)
    scores = np.einsum("nqhc,nkhc->nhqk", Q, K) / np.sqrt(C // heads)
    attended = np.einsum("nhqk,nkhc->nqhc", _softmax(scores), V).reshape(N, R * R, C)
    x = q + attended
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    normed = normed * _np(block.norm.weight) + _np(block.norm.bias)
    hidden = normed @ _np(block.mlp[0].weight).T + _np(block.mlp[0].bias)
    hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))  # exact GELU
    x = x + hidden @ _np(block.mlp[2].weight).T + _np(block.mlp[2].bias)
    np.testing.assert_allclose(_np(module(query, key)), _to_map(x), rtol=1e-5, atol=1e-5)


def test_variants_differ_and_use_the_intersection():
    torch.manual_seed(2)
    query, key = _inputs(2)
    nonlocal_cr = NonLocalCR(_cfg("nonlocal", REDUCED_CHANNELS=4), C).eval()
    with torch.no_grad():
        nonlocal_cr.lift[1].weight.fill_(1.0)
    transformer = TransformerCR(_cfg("transformer"), C).eval()
    outputs = {
        "nonlocal": nonlocal_cr(query, key),
        "transformer": transformer(query, key),
        "none": NoCR(_cfg("none"), C)(query, key),
    }
    assert torch.equal(outputs["none"], query)
    assert not torch.allclose(outputs["nonlocal"], outputs["transformer"], atol=1e-3)
    for name in ("nonlocal", "transformer"):
        assert not torch.allclose(outputs[name], query, atol=1e-3)
    # The key is what the object attends to: other intersection features, other output.
    other_key = key + 1.0
    assert not torch.allclose(transformer(query, other_key), outputs["transformer"], atol=1e-3)
    assert not torch.allclose(nonlocal_cr(query, other_key), outputs["nonlocal"], atol=1e-3)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="NUM_HEADS"):
        TransformerCR(_cfg("transformer", NUM_HEADS=3), C)
