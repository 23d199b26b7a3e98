"""Dataset loaders and their DatasetCatalog registration. Importing this package registers the
built-in datasets (``builtin``)."""

from . import builtin  # noqa: F401  registers the built-in datasets
from .dexycb import load_dexycb, register_dexycb
from .fpha import load_fpha, register_fpha
from .freihand import load_freihand, register_freihand
from .ho3d import load_ho3d, register_ho3d
from .object_models import ObjectModels, load_object_model
from .pseudo_labels import load_pseudo_labels, register_pseudo_label_dataset

__all__ = [
    "ObjectModels",
    "load_dexycb",
    "load_fpha",
    "load_freihand",
    "load_ho3d",
    "load_object_model",
    "load_pseudo_labels",
    "register_dexycb",
    "register_fpha",
    "register_freihand",
    "register_ho3d",
    "register_pseudo_label_dataset",
]
