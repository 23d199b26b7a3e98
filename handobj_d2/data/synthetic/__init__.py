"""Synthetic hand-object data in HO3D's format: labeled train/evaluation splits, YCB-like object
models and unlabeled videos from shiftable domains (``tools/make_synthetic_dataset.py``)."""

from .backgrounds import BACKGROUND_REGISTRY
from .domains import SYNTHETIC_DOMAIN_REGISTRY, SyntheticDomain, get_domain
from .generate import (
    SEQUENCE_LENGTH,
    SUMMARY_FILE,
    SyntheticSceneGenerator,
    dataset_summary,
    generate_dataset,
    prepare_output,
    unfinished_same_set,
)
from .objects import EVALUATION_OBJECTS, OBJECT_SPECS, TRAIN_OBJECTS, UNSEEN_OBJECTS

__all__ = [
    "BACKGROUND_REGISTRY",
    "EVALUATION_OBJECTS",
    "OBJECT_SPECS",
    "SEQUENCE_LENGTH",
    "SUMMARY_FILE",
    "SYNTHETIC_DOMAIN_REGISTRY",
    "SyntheticDomain",
    "SyntheticSceneGenerator",
    "TRAIN_OBJECTS",
    "UNSEEN_OBJECTS",
    "dataset_summary",
    "generate_dataset",
    "get_domain",
    "prepare_output",
    "unfinished_same_set",
]
