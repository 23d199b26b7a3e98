"""Object models of a dataset, read lazily: ``ObjectModels`` is the ``object_models`` mapping of
the datasets' metadata (docs/design.md): name -> {points (N, 3) m in the object frame,
diameter m, symmetric bool, hull (M, 3) m: the points' convex-hull vertices, enough to bound
projections}. Files are read on first access, so registering a dataset reads nothing."""

import logging
import os
from collections.abc import Mapping

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

logger = logging.getLogger(__name__)

# YCB objects that need the symmetric pose error (ADD-S), as in PoseCNN / BOP YCB-Video.
YCB_SYMMETRIC_OBJECTS = frozenset(
    {"024_bowl", "036_wood_block", "051_large_clamp", "052_extra_large_clamp", "061_foam_brick"}
)


def read_xyz(path):
    """Points (N, 3) from an "x y z" per line text file (YCB's points.xyz)."""
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not an 'x y z' point file ({e})") from None
    return points


def read_obj_vertices(path):
    """Vertices (N, 3) of a Wavefront OBJ file (its "v x y z" lines)."""
    with open(path) as f:
        rows = [line.split()[1:4] for line in f if line.startswith("v ")]
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, 3)
    except ValueError as e:
        raise ValueError(f"{path}: malformed vertex line in the OBJ file ({e})") from None


def read_ply_vertices(path):
    """Vertices (N, 3) of a PLY mesh or point cloud (via trimesh)."""
    import trimesh

    try:
        geometry = trimesh.load(path, process=False)
    except Exception as e:  # trimesh raises many types for broken files
        raise ValueError(f"{path}: cannot read the PLY file ({e})") from None
    return np.asarray(geometry.vertices, dtype=np.float64)


MODEL_READERS = {".xyz": read_xyz, ".obj": read_obj_vertices, ".ply": read_ply_vertices}


def load_object_model(path, symmetric=False, scale=1.0):
    """{points, diameter, symmetric, hull} from a model file (.xyz, .obj or .ply), points in
    the file's unit times ``scale`` (metres wanted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"object model not found: {path}")
    extension = os.path.splitext(path)[1].lower()
    if extension not in MODEL_READERS:
        raise ValueError(f"{path}: unknown model format (known: {sorted(MODEL_READERS)})")
    points = MODEL_READERS[extension](path) * scale
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 4:
        raise ValueError(f"{path}: expected at least 4 points with 3 coordinates")
    if not np.isfinite(points).all():
        raise ValueError(f"{path}: model has non-finite coordinates")
    hull = ConvexHull(points).vertices
    return {
        "points": points,
        "diameter": float(pdist(points[hull]).max()),
        "symmetric": bool(symmetric),
        "hull": points[hull],
    }


class ObjectModels(Mapping):
    """Lazy name -> model dict mapping.

    Args:
        find_files: callable returning {name: model file path}; called once, on first use.
        symmetric: names of symmetric objects.
        scale: multiplies the file's coordinates to give metres.
    """

    # Identity comparison: comparing models would read every file (and numpy arrays do not
    # compare to a bool), e.g. when Detectron2's Metadata checks a value set twice.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, find_files, symmetric=(), scale=1.0):
        self._find_files = find_files
        self._files = None
        self._models = {}
        self.symmetric = frozenset(symmetric)
        self.scale = scale

    @property
    def files(self):
        """{name: model file path}."""
        if self._files is None:
            self._files = dict(self._find_files())
        return self._files

    def __getitem__(self, name):
        if name not in self._models:
            path = self.files[name]  # KeyError for an unknown object, as a Mapping should
            self._models[name] = load_object_model(path, name in self.symmetric, self.scale)
            logger.debug(f"Loaded object model {name} from {path}")
        return self._models[name]

    def __iter__(self):
        return iter(self.files)

    def __len__(self):
        return len(self.files)


def model_folder_files(folder, file_name):
    """Finder for ``ObjectModels``: {sub-folder name: <folder>/<name>/<file_name>} for every
    sub-folder holding that file (YCB layout: ``models/<name>/points.xyz``)."""

    def find():
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"object model folder not found: {folder}")
        return {
            name: os.path.join(folder, name, file_name)
            for name in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, name, file_name))
        }

    return find
