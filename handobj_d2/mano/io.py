"""Reading MANO model files without chumpy.

The official MANO_RIGHT.pkl / MANO_LEFT.pkl (https://mano.is.tue.mpg.de, licensed: users
download them) are Python 2 pickles whose arrays are chumpy objects and whose J_regressor is a
scipy sparse matrix. ``load_mano_model`` reads them, and plain-numpy MANO-format files, with a
restricted unpickler that replaces chumpy classes by a stand-in keeping the wrapped array.
"""

import logging
import os
import pickle

import numpy as np

logger = logging.getLogger(__name__)

MANO_HELP = (
    "MANO is licensed and not shipped with handobj_d2: register at https://mano.is.tue.mpg.de, "
    "accept its licence (https://mano.is.tue.mpg.de/license.html), download 'Models & Code' and "
    "point the config key MODEL.MANO.MODEL_PATH at mano_v1_2/models/MANO_RIGHT.pkl (or its "
    "folder). Leave MODEL.MANO.MODEL_PATH empty to use the project's synthetic MANO-format hand "
    "(for tests and the demo only)."
)

# Arrays of a MANO model file and their shapes (None: any size along that axis).
MANO_FIELDS = {
    "v_template": (778, 3),
    "f": (1538, 3),
    "J_regressor": (16, 778),
    "kintree_table": (2, 16),
    "weights": (778, 16),
    "posedirs": (778, 3, 135),
    "shapedirs": (778, 3, None),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}

_SYNTHETIC_WARNING = f"""
{"!" * 80}
!! MODEL.MANO.MODEL_PATH is empty: using handobj_d2's SYNTHETIC MANO-format hand.
!! It is made for tests and the demo; numbers obtained with it are not MANO numbers.
!! {MANO_HELP}
{"!" * 80}"""

_ALLOWED_MODULES = (
    "numpy",
    "scipy.sparse",
    "copy_reg",
    "copyreg",
    "_codecs",
    "builtins",
    "__builtin__",
)


class _ChumpyArray:
    """Stand-in for chumpy objects: keeps the array chumpy stored in its state as ``x``."""

    def __init__(self, *args, **kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _MANOUnpickler(pickle.Unpickler):
    """Unpickler that maps chumpy classes to _ChumpyArray and refuses unexpected modules."""

    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        if not module.startswith(_ALLOWED_MODULES):
            raise pickle.UnpicklingError(f"unexpected class {module}.{name} in a MANO file")
        return super().find_class(module, name)


def _to_numpy(value, key, path):
    if isinstance(value, _ChumpyArray):
        if not isinstance(value.state, dict) or "x" not in value.state:
            raise ValueError(f"{path}: field '{key}' is a chumpy object without an array")
        value = value.state["x"]
    if hasattr(value, "toarray"):  # scipy sparse (J_regressor)
        value = value.toarray()
    return np.asarray(value)


def read_mano_file(path):
    """Read a MANO-format pickle into a dict of numpy arrays (strings kept as they are).

    Raises FileNotFoundError / ValueError naming ``path`` with instructions to get MANO.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MANO model file not found: {path}. {MANO_HELP}")
    try:
        with open(path, "rb") as f:
            raw = _MANOUnpickler(f, encoding="latin1").load()
    except Exception as e:
        raise ValueError(f"{path}: cannot read it as a MANO model file ({e}). {MANO_HELP}") from e
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: not a MANO model file (holds a {type(raw).__name__}). {MANO_HELP}"
        )
    missing = [k for k in MANO_FIELDS if k not in raw]
    if missing:
        raise ValueError(f"{path}: not a MANO model file, missing fields {missing}. {MANO_HELP}")
    model = {k: (v if isinstance(v, str) else _to_numpy(v, k, path)) for k, v in raw.items()}
    for key, shape in MANO_FIELDS.items():
        got = model[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise ValueError(f"{path}: MANO field '{key}' has shape {got}, expected {shape}")
    return model


def load_mano_model(path="", side="right"):
    """MANO model as a dict of numpy arrays (MANO's field names, metres).

    Args:
        path: a MANO pickle, or a folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl. Empty: the
            project's synthetic MANO-format hand (a loud warning is logged).
        side: "right" or "left"; picks the file inside a folder.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if not path:
        from .synthetic import build_synthetic_mano

        logger.warning(_SYNTHETIC_WARNING)
        return build_synthetic_mano(side)
    if os.path.isdir(path):
        path = os.path.join(path, f"MANO_{side.upper()}.pkl")
    return read_mano_file(path)
