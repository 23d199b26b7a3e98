"""MANO hand model: manopth-compatible layer, the model's hand layer, chumpy-free loading and
the project's synthetic MANO-format hand."""

from .io import MANO_HELP, load_mano_model, read_mano_file
from .layer import HandLayer, ManoLayer, build_hand_layer
from .synthetic import build_synthetic_mano, write_synthetic_mano

__all__ = [
    "HandLayer",
    "ManoLayer",
    "build_hand_layer",
    "load_mano_model",
    "read_mano_file",
    "MANO_HELP",
    "build_synthetic_mano",
    "write_synthetic_mano",
]
