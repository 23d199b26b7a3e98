"""A small z-buffered triangle rasteriser (numpy + OpenCV) with Lambert shading.

Used by the synthetic data generator, the demo's mesh overlays and the pictures in the docs.

Frames and units
----------------
* Vertices are in the **OpenCV camera frame** (x right, y down, z forward), in metres; a point
  projects to pixels through the 3x3 intrinsics ``K``: ``(u, v, 1) ~ K @ (x, y, z)``.
* Pixel (column x, row y) is sampled at its centre, the integer coordinates (x, y) (the same
  convention as ``geometry.project_points`` and OpenCV's drawing functions).
* Triangles with a vertex closer than ``near`` (metres along z) are dropped, not clipped.

API
---
``Mesh(vertices (N, 3) m, faces (F, 3) int, colors=None | (3,) | (N, 3) RGB in [0, 1],
uvs=None | (N, 2), texture=None | (Ht, Wt, 3) uint8 RGB, smooth=True, cull_back_faces=False)``:
one mesh; per-vertex (or one) colour, or texture coordinates (OBJ convention: v = 0 is the
bottom row of the texture) with a texture. ``smooth`` interpolates area-weighted vertex
normals (else flat face normals). Without back-face culling both sides of a face are shaded,
with the normal turned towards the camera; with it, faces whose normal (right-hand rule over
the vertex order) points away from the camera are not drawn.

``Lighting(ambient, diffuse, direction (3,), colour (3,))``: ambient plus one directional light;
``direction`` is the unit vector from the scene towards the light in the camera frame
(``(0, 0, -1)``: a light at the camera). Shaded colour = albedo * colour * (ambient +
diffuse * max(0, normal . direction)), clipped to [0, 1].

``render_meshes(K, image_size (W, H), meshes, lighting=Lighting(), background=None) ->
Rendering(image (H, W, 3) uint8 RGB, mesh_id (H, W) int32 (index into ``meshes``, -1 where
no mesh), depth (H, W) float32 metres along z (inf where no mesh))``. ``background``: None
(black), an RGB colour (3,) in [0, 1], or an (H, W, 3) image (uint8, or float in [0, 1]).

``overlay(image, rendering, alpha=0.6)``: the rendering blended over an (H, W, 3) uint8 image
where a mesh is visible (semi-transparent mesh overlays on photos).

Rasterisation is vectorised over fragments: every triangle's pixel bounding box is expanded
into candidate pixels at once (in chunks of ``FRAGMENT_CHUNK``), barycentric coordinates are
affine in the pixel position, depth and attributes are interpolated perspective-correctly
(linear in 1/z), and the nearest fragment of every pixel wins (ties: the earlier mesh/face).
"""

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

DEFAULT_NEAR = 0.01  # m
FRAGMENT_CHUNK = 1 << 21  # candidate pixels rasterised at once
_EPS = 1e-9
_EDGE = 1e-6  # pixel centres this close outside an edge count as inside (rounding)


@dataclass
class Mesh:
    """A triangle mesh to render; see the module docstring for shapes, units and frames."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: Optional[np.ndarray] = None
    uvs: Optional[np.ndarray] = None
    texture: Optional[np.ndarray] = None
    smooth: bool = True
    cull_back_faces: bool = False

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        self.faces = np.asarray(self.faces, dtype=np.int64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"Mesh vertices must be (N, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"Mesh faces must be (F, 3), got {self.faces.shape}")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError(
                f"Mesh faces index vertices {self.faces.min()}..{self.faces.max()}, "
                f"but there are {len(self.vertices)} vertices"
            )
        if (self.uvs is None) != (self.texture is None):
            raise ValueError("Mesh needs both uvs and texture, or neither")
        if self.uvs is not None:
            self.uvs = np.asarray(self.uvs, dtype=np.float64)
            self.texture = np.asarray(self.texture)
            if self.uvs.shape != (len(self.vertices), 2):
                raise ValueError(
                    f"Mesh uvs must be ({len(self.vertices)}, 2), got {self.uvs.shape}"
                )
            if self.texture.ndim != 3 or self.texture.shape[2] != 3:
                raise ValueError(f"Mesh texture must be (H, W, 3), got {self.texture.shape}")
            if self.colors is not None:
                raise ValueError("Mesh takes colors or a texture, not both")
        colors = np.ones(3) if self.colors is None else np.asarray(self.colors, np.float64)
        if colors.shape == (3,):
            colors = np.broadcast_to(colors, self.vertices.shape)
        if colors.shape != self.vertices.shape:
            raise ValueError(f"Mesh colors must be (3,) or (N, 3), got {colors.shape}")
        self.colors = colors


@dataclass
class Lighting:
    """Ambient + one directional light (see the module docstring)."""

    ambient: float = 0.4
    diffuse: float = 0.6
    direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -1.0]))
    colour: np.ndarray = field(default_factory=lambda: np.ones(3))


class Rendering(NamedTuple):
    """image (H, W, 3) uint8 RGB, mesh_id (H, W) int32 (-1: background), depth (H, W) float32
    metres along the optical axis (inf: background)."""

    image: np.ndarray
    mesh_id: np.ndarray
    depth: np.ndarray


def face_normals(vertices, faces):
    """Unnormalised face normals (F, 3): (b - a) x (c - a); length = twice the area."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return np.cross(b - a, c - a)


def vertex_normals(vertices, faces):
    """Unit area-weighted vertex normals (N, 3) (zero for vertices of no face)."""
    normals = np.zeros_like(vertices)
    per_face = face_normals(vertices, faces)
    for k in range(3):
        np.add.at(normals, faces[:, k], per_face)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), _EPS)


def _background(background, width, height):
    """Background as an (H, W, 3) float image in [0, 1]."""
    if background is None:
        return np.zeros((height, width, 3))
    background = np.asarray(background)
    if background.shape == (3,):
        return np.broadcast_to(background.astype(np.float64), (height, width, 3)).copy()
    if background.shape != (height, width, 3):
        raise ValueError(
            f"background must be (3,) or ({height}, {width}, 3) for a {width}x{height} image, "
            f"got {background.shape}"
        )
    if background.dtype == np.uint8:
        return background / 255.0
    return np.clip(background.astype(np.float64), 0, 1)


def _triangles(K, meshes, near):
    """Screen-space triangles of all meshes, near-plane dropped and back faces culled.

    Returns per kept triangle: mesh index (T,), face index within its mesh (T,), pixel
    positions (T, 3, 2), depths (T, 3)."""
    mesh_ids, face_ids, pixels, depths = [], [], [], []
    for index, mesh in enumerate(meshes):
        corners = mesh.vertices[mesh.faces]  # (F, 3, 3)
        keep = (corners[..., 2] > near).all(1)
        if mesh.cull_back_faces:
            normal = face_normals(mesh.vertices, mesh.faces)
            keep &= (normal * corners.mean(1)).sum(1) < 0
        kept = np.flatnonzero(keep)
        corners = corners[kept]
        uvw = corners @ np.asarray(K, dtype=np.float64).T
        mesh_ids.append(np.full(len(kept), index))
        face_ids.append(kept)
        pixels.append(uvw[..., :2] / uvw[..., 2:])
        depths.append(corners[..., 2])
    return (
        np.concatenate(mesh_ids),
        np.concatenate(face_ids),
        np.concatenate(pixels).reshape(-1, 3, 2),
        np.concatenate(depths).reshape(-1, 3),
    )


def _barycentric_planes(pixels):
    """Per triangle, coefficients (T, 3, 3) of b_k(x, y) = A x + B y + C for the three screen
    barycentric coordinates, and the signed doubled area (T,)."""
    a, b, c = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    planes = np.empty((len(pixels), 3, 3))
    for k, (p, q) in enumerate(((b, c), (c, a), (a, b))):
        # Edge function of the edge opposite vertex k: cross(q - p, x - p) / area.
        planes[:, k, 0] = -(q[:, 1] - p[:, 1])
        planes[:, k, 1] = q[:, 0] - p[:, 0]
        planes[:, k, 2] = (q[:, 1] - p[:, 1]) * p[:, 0] - (q[:, 0] - p[:, 0]) * p[:, 1]
    safe = np.where(np.abs(area) > _EPS, area, 1.0)
    return planes / safe[:, None, None], area


def _rasterise(pixels, depths, width, height):
    """Nearest fragment per covered pixel. Returns pixel index (P,) (row * width + col),
    triangle (P,), screen barycentrics (P, 3) and depth (P,) of the winning fragments."""
    planes, area = _barycentric_planes(pixels)
    low = np.maximum(np.ceil(pixels.min(1) - _EDGE), 0).astype(np.int64)
    high = np.minimum(np.floor(pixels.max(1) + _EDGE), [width - 1, height - 1]).astype(np.int64)
    size = high - low + 1
    valid = (size > 0).all(1) & (np.abs(area) > _EPS)
    triangles = np.flatnonzero(valid)
    counts = size[triangles, 0] * size[triangles, 1]
    winners = []
    start = 0
    while start < len(triangles):
        # Take triangles until the chunk holds FRAGMENT_CHUNK candidates (at least one).
        total = np.cumsum(counts[start:])
        stop = start + max(int(np.searchsorted(total, FRAGMENT_CHUNK, side="right")), 1)
        winners.append(_rasterise_chunk(triangles[start:stop], counts[start:stop], low, size,
                                        planes, depths, width))  # fmt: skip
        start = stop
    if not winners:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros((0, 3)), np.zeros(0)
    return _nearest(*(np.concatenate(parts) for parts in zip(*winners)))


def _rasterise_chunk(triangles, counts, low, size, planes, depths, width):
    """Fragments of a chunk of triangles (bounding-box pixels inside the triangle), reduced to
    the nearest per pixel."""
    tri = np.repeat(triangles, counts)
    offsets = np.cumsum(counts) - counts
    local = np.arange(counts.sum()) - np.repeat(offsets, counts)
    x = low[tri, 0] + local % size[tri, 0]
    y = low[tri, 1] + local // size[tri, 0]
    plane = planes[tri]
    bary = plane[..., 0] * x[:, None] + plane[..., 1] * y[:, None] + plane[..., 2]
    inside = (bary >= -_EDGE).all(1)
    tri, x, y, bary = tri[inside], x[inside], y[inside], bary[inside]
    inverse_depth = (bary / depths[tri]).sum(1)
    return _nearest(y * width + x, tri, bary, 1.0 / inverse_depth)


def _nearest(pixel, tri, bary, depth):
    """Keep, per pixel, the fragment of least depth (ties: the lowest triangle index)."""
    order = np.lexsort((tri, depth, pixel))
    pixel = pixel[order]
    first = np.ones(len(pixel), bool)
    first[1:] = pixel[1:] != pixel[:-1]
    keep = order[first]
    return pixel[first], tri[keep], bary[keep], depth[keep]


def _sample_texture(texture, uvs):
    """Bilinear texture lookup: uvs (P, 2) (v = 0 at the bottom row) -> RGB (P, 3) in [0, 1]."""
    height, width = texture.shape[:2]
    x = np.clip(uvs[:, 0] * width - 0.5, 0, width - 1)
    y = np.clip((1 - uvs[:, 1]) * height - 0.5, 0, height - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    texture = texture.astype(np.float64) / (255.0 if texture.dtype == np.uint8 else 1.0)
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _shade(mesh, faces, weights, view, lighting):
    """Lit colours (P, 3) of fragments of one mesh: its face ids (P,), perspective-correct
    barycentric weights (P, 3) and the camera-to-point directions (P, 3)."""
    corners = mesh.faces[faces]  # (P, 3)
    if mesh.smooth:
        normals = vertex_normals(mesh.vertices, mesh.faces)
        normal = (normals[corners] * weights[..., None]).sum(1)
    else:
        normal = face_normals(mesh.vertices, mesh.faces)[faces]
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), _EPS)
    # Two-sided: the side the camera sees faces it (decided per face, not per pixel, so that
    # smooth normals keep their variation across the face).
    facing_away = (face_normals(mesh.vertices, mesh.faces)[faces] * view).sum(1) > 0
    normal[facing_away] *= -1
    if mesh.texture is not None:
        albedo = _sample_texture(mesh.texture, (mesh.uvs[corners] * weights[..., None]).sum(1))
    else:
        albedo = (mesh.colors[corners] * weights[..., None]).sum(1)
    direction = np.asarray(lighting.direction, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    lambert = np.maximum(normal @ direction, 0.0)
    intensity = lighting.ambient + lighting.diffuse * lambert
    return albedo * np.asarray(lighting.colour, dtype=np.float64) * intensity[:, None]


def render_meshes(K, image_size, meshes, lighting=None, background=None, near=DEFAULT_NEAR):
    """Render meshes (list of Mesh) seen through intrinsics K (3, 3) px into an image of
    ``image_size`` (width, height) px. Returns a Rendering (see the module docstring)."""
    width, height = (int(s) for s in image_size)
    lighting = Lighting() if lighting is None else lighting
    meshes = list(meshes)
    image = _background(background, width, height)
    mesh_id = np.full(height * width, -1, np.int32)
    depth = np.full(height * width, np.inf, np.float32)
    if meshes:
        owner, face, pixels, depths = _triangles(K, meshes, near)
        pixel, tri, bary, frag_depth = _rasterise(pixels, depths, width, height)
        mesh_id[pixel] = owner[tri]
        depth[pixel] = frag_depth
        # Perspective-correct weights: screen barycentrics over vertex depth, renormalised.
        weights = bary / depths[tri]
        weights /= weights.sum(1, keepdims=True)
        colour = image.reshape(-1, 3)
        K_inv = np.linalg.inv(np.asarray(K, dtype=np.float64))
        for index, mesh in enumerate(meshes):
            mine = owner[tri] == index
            if not mine.any():
                continue
            where = pixel[mine]
            rays = np.stack([where % width, where // width, np.ones(len(where))], 1) @ K_inv.T
            colour[where] = _shade(mesh, face[tri[mine]], weights[mine], rays, lighting)
        image = colour.reshape(height, width, 3)
    image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return Rendering(image, mesh_id.reshape(height, width), depth.reshape(height, width))


def overlay(image, rendering, alpha=0.6):
    """Blend a Rendering over an (H, W, 3) uint8 image where a mesh is visible: ``alpha`` of
    the rendered colour, ``1 - alpha`` of the image. Returns a new uint8 image."""
    image = np.asarray(image)
    if image.shape != rendering.image.shape:
        raise ValueError(f"image {image.shape} and rendering {rendering.image.shape} differ")
    out = image.astype(np.float64)
    covered = rendering.mesh_id >= 0
    out[covered] = (1 - alpha) * out[covered] + alpha * rendering.image[covered]
    return np.round(out).astype(np.uint8)
