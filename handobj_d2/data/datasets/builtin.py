"""The datasets handobj_d2 registers on import, under ``$HANDOBJ_DATASETS`` (default
``./datasets``, like Detectron2's ``$DETECTRON2_DATASETS``). Registration is lazy: nothing is
read until a dataset is used, and a missing dataset fails then, listing what is missing.
Layouts and downloads: datasets/README.md."""

import os

from detectron2.data import DatasetCatalog

from .dexycb import DEXYCB_SPLITS, register_dexycb
from .fpha import FPHA_SPLITS, register_fpha
from .freihand import register_freihand
from .ho3d import register_ho3d

# name -> (folder under the root, split, HO3D version). The synthetic sets are HO3D v2 trees.
BUILTIN_HO3D = {
    "ho3d_v2_train": ("HO3D_v2", "train", "v2"),
    "ho3d_v2_evaluation": ("HO3D_v2", "evaluation", "v2"),
    "ho3d_v3_train": ("HO3D_v3", "train", "v3"),
    "ho3d_v3_evaluation": ("HO3D_v3", "evaluation", "v3"),
    "synthetic_train": ("synthetic", "train", "v2"),
    "synthetic_eval": ("synthetic", "evaluation", "v2"),
    "synthetic_shifted_eval": ("synthetic_shifted", "evaluation", "v2"),
}
# DexYCB s0: the toolkit's benchmark frames (every frame with a hand), and "_grasp": right
# hands with the grasped object in the hand only (not comparable with the benchmark).
BUILTIN_DEXYCB = {
    f"dexycb_s0_{split}{suffix}": ("DexYCB", split, protocol)
    for split in DEXYCB_SPLITS
    for suffix, protocol in (("", "official"), ("_grasp", "grasp"))
}
BUILTIN_FPHA = {f"fpha_{split}": ("FPHA", split) for split in FPHA_SPLITS}
# name -> (folder, split, MANO model for the labels: None = $HANDOBJ_MANO_PATH; the synthetic
# set ships the hand it was made with).
BUILTIN_FREIHAND = {
    "freihand_train": ("FreiHAND", "training", None),
    "freihand_evaluation": ("FreiHAND", "evaluation", None),
    "synthetic_freihand_train": ("synthetic_freihand", "training", "mano"),
    "synthetic_freihand_evaluation": ("synthetic_freihand", "evaluation", "mano"),
}


def datasets_root():
    """``$HANDOBJ_DATASETS`` or ``./datasets``."""
    return os.path.expanduser(os.getenv("HANDOBJ_DATASETS", "datasets"))


def register_all_builtin(root):
    """Register every built-in dataset with its folder under ``root`` (skipping names already
    registered)."""
    registered = set(DatasetCatalog.list())
    for name, (folder, split, version) in BUILTIN_HO3D.items():
        if name not in registered:
            register_ho3d(name, os.path.join(root, folder), split, version, check=False)
    for name, (folder, split, protocol) in BUILTIN_DEXYCB.items():
        if name not in registered:
            register_dexycb(name, os.path.join(root, folder), split, protocol=protocol, check=False)
    for name, (folder, split) in BUILTIN_FPHA.items():
        if name not in registered:
            register_fpha(name, os.path.join(root, folder), split, check=False)
    for name, (folder, split, mano) in BUILTIN_FREIHAND.items():
        if name not in registered:
            path = os.path.join(root, folder)
            mano_path = None if mano is None else os.path.join(path, mano)
            register_freihand(name, path, split, mano_path, check=False)


register_all_builtin(datasets_root())
