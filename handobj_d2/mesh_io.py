"""Triangle mesh files (.obj, .ply) through trimesh, written atomically."""

import os

import numpy as np
import trimesh

from .utils.io import atomic_file

MESH_FORMATS = ("obj", "ply")


def _format(path):
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in MESH_FORMATS:
        raise ValueError(
            f"{path}: unsupported mesh file extension {extension!r}; use one of {MESH_FORMATS}"
        )
    return extension


def export_mesh(path, vertices, faces, vertex_colors=None):
    """Write a mesh to ``path`` (.obj or .ply, by extension), atomically.

    vertices (N, 3) float (metres in this project), faces (F, 3) vertex ids, vertex_colors
    None or (N, 3) / (N, 4) RGB(A), floats in [0, 1] or uint8.
    """
    file_format = _format(path)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"{path}: vertices must be (N, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{path}: faces must be (F, 3), got {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"{path}: faces index vertices {faces.min()}..{faces.max()} but there are "
            f"{len(vertices)} vertices"
        )
    if vertex_colors is not None:
        vertex_colors = np.asarray(vertex_colors)
        if vertex_colors.shape not in ((len(vertices), 3), (len(vertices), 4)):
            raise ValueError(
                f"{path}: vertex_colors must be ({len(vertices)}, 3 or 4), "
                f"got {vertex_colors.shape}"
            )
        if vertex_colors.dtype != np.uint8:
            vertex_colors = np.round(np.clip(vertex_colors, 0, 1) * 255).astype(np.uint8)
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=vertex_colors, process=False)
    with atomic_file(path) as f:
        mesh.export(f, file_type=file_format)
    return path
