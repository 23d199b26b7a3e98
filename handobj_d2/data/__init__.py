"""Data: dataset loaders (registered on import), the hand-object dataset mapper and the train
loader mixing labeled and pseudo-labeled data."""

from .build import build_hand_object_train_loader
from .dataset_mapper import HandObjectDatasetMapper
from .datasets import register_dexycb, register_fpha, register_ho3d, register_pseudo_label_dataset

__all__ = [
    "HandObjectDatasetMapper",
    "build_hand_object_train_loader",
    "register_dexycb",
    "register_fpha",
    "register_ho3d",
    "register_pseudo_label_dataset",
]
