"""YCB-like objects of the synthetic set: boxes and cylinders of YCB sizes with simple textures.

Each object's frame (the frame of ``models/<name>/points.xyz``) has its origin at the object's
centre and its axes along the box edges (x, y, z = ``size``) or, for cylinders, z along the axis.
Units are metres. Shapes are registered in ``OBJECT_SHAPES``; each gives a UV-mapped triangle
mesh, its analytic signed distance (negative inside, used to keep fingers out of the object) and
area-weighted surface samples.
"""

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

TEXTURE_SIZE = 512  # texture_map.png side, pixels


def _stable_seed(*parts):
    """A seed that does not change between runs (Python's ``hash`` of strings does)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def _grid(u_steps, v_steps):
    """Vertex (u, v) in [0, 1]^2 of a regular grid and its two triangles per cell."""
    u, v = np.meshgrid(np.linspace(0, 1, u_steps + 1), np.linspace(0, 1, v_steps + 1))
    uv = np.stack([u.ravel(), v.ravel()], 1)
    row = u_steps + 1
    cells = np.array([(j * row + i) for j in range(v_steps) for i in range(u_steps)])
    faces = np.concatenate(
        [
            np.stack([cells, cells + 1, cells + row + 1], 1),
            np.stack([cells, cells + row + 1, cells + row], 1),
        ]
    )
    return uv, faces


def _orient_outward(vertices, faces, outward):
    """Flip triangles whose normal disagrees with ``outward``: a direction (3,) for all
    triangles, or a function of the triangle centres (F, 3) giving one (F, 3) per triangle."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    if callable(outward):
        outward = outward((a + b + c) / 3)
    flip = (np.cross(b - a, c - a) * outward).sum(-1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


class BoxShape:
    """Axis-aligned box of edge lengths ``size`` (3,) centred at the origin."""

    name = "box"
    # Texture atlas cell (column, row) of each face, in a 3 x 2 grid: +x, -x, +y, -y, +z, -z.
    _CELLS = ((0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1))

    def __init__(self, size):
        self.half = np.asarray(size, dtype=np.float64) / 2

    def mesh(self, subdivisions=8):
        """vertices (V, 3) m, faces (F, 3) counter-clockwise seen from outside, uvs (V, 2)."""
        vertices, faces, uvs = [], [], []
        grid_uv, grid_faces = _grid(subdivisions, subdivisions)
        for face, (column, row) in enumerate(self._CELLS):
            axis, sign = face // 2, 1.0 - 2 * (face % 2)
            u_axis, v_axis = [a for a in range(3) if a != axis]
            points = np.zeros((len(grid_uv), 3))
            points[:, axis] = sign * self.half[axis]
            points[:, u_axis] = (2 * grid_uv[:, 0] - 1) * self.half[u_axis]
            points[:, v_axis] = (2 * grid_uv[:, 1] - 1) * self.half[v_axis]
            outward = np.eye(3)[axis] * sign
            faces.append(_orient_outward(points, grid_faces, outward) + sum(map(len, vertices)))
            vertices.append(points)
            # Inset cells by a texel margin so that bilinear lookups stay inside a face.
            margin = 2.0 / TEXTURE_SIZE
            uvs.append(
                np.stack(
                    [
                        (column + margin + grid_uv[:, 0] * (1 - 2 * margin)) / 3,
                        (row + margin + grid_uv[:, 1] * (1 - 2 * margin)) / 2,
                    ],
                    1,
                )
            )
        return np.concatenate(vertices), np.concatenate(faces), np.concatenate(uvs)

    def texture_regions(self, size):
        """Texture (size, size) of face indices 0-5 (+x, -x, +y, -y, +z, -z) and of the
        position (size, size) in [0, 1] across each face along its u axis; row 0 at v = 1."""
        u = (np.arange(size) + 0.5) / size
        v = 1 - u
        column, row = np.minimum((u * 3).astype(int), 2), np.minimum((v * 2).astype(int), 1)
        atlas = np.empty((2, 3), int)  # face index of each (row, column) cell
        for face, (cell_column, cell_row) in enumerate(self._CELLS):
            atlas[cell_row, cell_column] = face
        regions = atlas[row[:, None], column[None, :]]
        return regions, np.broadcast_to((u * 3) % 1, (size, size))

    def signed_distance(self, points):
        """Signed distance (N,) m of points (N, 3) in the object frame; negative inside."""
        q = np.abs(points) - self.half
        outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
        return outside + np.minimum(q.max(-1), 0)

    def corners(self):
        """The 8 corners (8, 3) of the axis-aligned box."""
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])
        return signs * self.half


class CylinderShape:
    """Cylinder of diameter ``size[0]`` (= ``size[1]``) and height ``size[2]`` along z."""

    name = "cylinder"

    def __init__(self, size):
        if abs(size[0] - size[1]) > 1e-9:
            raise ValueError(f"a cylinder needs size[0] == size[1] (diameter), got {size}")
        self.radius = size[0] / 2
        self.half_height = size[2] / 2

    def mesh(self, subdivisions=8):
        """vertices (V, 3) m, faces (F, 3) counter-clockwise seen from outside, uvs (V, 2).

        The side takes the top two thirds of the texture (u around the axis, v along it), the
        caps the two discs of the bottom third."""
        segments = 8 * subdivisions
        side_uv, side_faces = _grid(segments, subdivisions)
        angle = 2 * np.pi * side_uv[:, 0]
        side = np.stack(
            [
                self.radius * np.cos(angle),
                self.radius * np.sin(angle),
                (2 * side_uv[:, 1] - 1) * self.half_height,
            ],
            1,
        )
        side_faces = _orient_outward(side, side_faces, lambda centres: centres * [1, 1, 0])
        vertices, faces = [side], [side_faces]
        uvs = [np.stack([side_uv[:, 0], 1 / 3 + side_uv[:, 1] * 2 / 3], 1)]
        rim = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        for cap, sign in enumerate((1.0, -1.0)):
            ring = np.stack(
                [self.radius * np.cos(rim), self.radius * np.sin(rim), np.full(segments, 0.0)], 1
            )
            points = np.concatenate([[[0.0, 0.0, 0.0]], ring])
            points[:, 2] = sign * self.half_height
            spoke = 1 + np.arange(segments)
            fan = np.stack([np.zeros(segments, int), spoke, 1 + spoke % segments], 1)
            fan = _orient_outward(points, fan, np.array([0.0, 0.0, sign]))
            faces.append(fan + sum(map(len, vertices)))
            vertices.append(points)
            centre = np.array([(cap + 0.5) / 2, 1 / 6])
            uvs.append(centre + points[:, :2] / self.radius * np.array([0.24, 0.16]))
        return np.concatenate(vertices), np.concatenate(faces), np.concatenate(uvs)

    def texture_regions(self, size):
        """Texture (size, size) of region indices: 0-3 the side's quarters around the axis,
        4 and 5 the caps at +z and -z; and the position (size, size) in [0, 1] along u within
        each region; row 0 at v = 1."""
        u = (np.arange(size) + 0.5) / size
        side = (_face_v(1 - u, self.name) >= 0)[:, None]
        quarter = np.broadcast_to(np.minimum((u * 4).astype(int), 3), (size, size))
        cap = np.broadcast_to(4 + (u >= 0.5), (size, size))
        return np.where(side, quarter, cap), np.where(side, (u * 4) % 1, (u * 2) % 1)

    def signed_distance(self, points):
        """Signed distance (N,) m of points (N, 3) in the object frame; negative inside."""
        d = np.stack(
            [
                np.linalg.norm(points[:, :2], axis=-1) - self.radius,
                np.abs(points[:, 2]) - self.half_height,
            ],
            -1,
        )
        return np.linalg.norm(np.maximum(d, 0), axis=-1) + np.minimum(d.max(-1), 0)

    def corners(self):
        """The 8 corners (8, 3) of the axis-aligned bounding box."""
        half = np.array([self.radius, self.radius, self.half_height])
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])
        return signs * half


OBJECT_SHAPES = {"box": BoxShape, "cylinder": CylinderShape}


@dataclass(frozen=True)
class ObjectSpec:
    """One YCB-like object: YCB name, shape (key of OBJECT_SHAPES), size (3,) m and colours
    (RGB 0-255) of its body, label band and caps."""

    name: str
    shape: str
    size: tuple
    body: tuple
    label: tuple
    cap: tuple


# YCB sizes (Calli et al. 2015), rounded to millimetres; colours roughly those of the products.
OBJECT_SPECS = {
    spec.name: spec
    for spec in (
        ObjectSpec("003_cracker_box", "box", (0.060, 0.158, 0.210), (200, 40, 35), (245, 215, 60), (180, 30, 30)),
        ObjectSpec("004_sugar_box", "box", (0.038, 0.089, 0.175), (240, 220, 90), (250, 250, 245), (220, 190, 60)),
        ObjectSpec("005_tomato_soup_can", "cylinder", (0.066, 0.066, 0.101), (200, 35, 30), (245, 245, 240), (170, 170, 175)),
        ObjectSpec("006_mustard_bottle", "box", (0.058, 0.095, 0.190), (245, 205, 30), (40, 80, 170), (235, 60, 40)),
        ObjectSpec("010_potted_meat_can", "box", (0.050, 0.097, 0.082), (40, 90, 170), (240, 230, 200), (190, 190, 195)),
        ObjectSpec("019_pitcher_base", "cylinder", (0.108, 0.108, 0.235), (60, 110, 200), (90, 140, 220), (50, 90, 170)),
        ObjectSpec("021_bleach_cleanser", "box", (0.065, 0.098, 0.250), (235, 235, 240), (50, 110, 200), (60, 60, 200)),
    )
}  # fmt: skip
# HO3D v2 evaluation objects; 019_pitcher_base is unseen in HO3D's training split.
EVALUATION_OBJECTS = (
    "021_bleach_cleanser",
    "006_mustard_bottle",
    "010_potted_meat_can",
    "019_pitcher_base",
)
TRAIN_OBJECTS = tuple(n for n in OBJECT_SPECS if n != "019_pitcher_base")
UNSEEN_OBJECTS = ("019_pitcher_base",)


def _face_v(v, shape):
    """Position (rows,) in [0, 1] across a face (box) or along the axis (cylinder side) of
    texture coordinate v; negative on the cylinder caps."""
    if shape == "cylinder":
        return (v - 1 / 3) * 1.5
    return (v * 2) % 1


# Tints of the six texture regions of a shape (box faces; cylinder side quarters and caps), RGB.
REGION_TINTS = np.array(
    [(230, 60, 50), (60, 180, 75), (50, 90, 220), (240, 210, 40), (200, 60, 200), (60, 200, 210)]
)


def object_texture(spec, shape):
    """Procedural texture (TEXTURE_SIZE, TEXTURE_SIZE, 3) uint8 RGB of an object, row 0 at
    v = 1 (image convention): body colour, a label band with stripes and blocks of 'print',
    cap colour and a little noise; deterministic per object name.

    Like a printed product, the object shows which way it is turned: each region of
    ``shape.texture_regions`` (box faces; cylinder side quarters and caps) is tinted its own
    colour of REGION_TINTS and darkens along its u axis. Without this every face looks the same
    and the control points (box corners) cannot be told apart from the image."""
    rng = np.random.default_rng(_stable_seed("texture", spec.name))
    size = TEXTURE_SIZE
    image = np.empty((size, size, 3), np.float64)
    image[:] = spec.body
    face_v = _face_v(1 - (np.arange(size) + 0.5) / size, spec.shape)
    band_low, band_high = rng.uniform(0.3, 0.42), rng.uniform(0.62, 0.75)
    band_rows = (face_v > band_low) & (face_v < band_high)
    image[band_rows] = spec.label
    for edge in np.flatnonzero(np.diff(band_rows.astype(int))):
        image[max(edge - 3, 0) : edge + 4] = np.array(spec.cap) * 0.8
    rows = np.flatnonzero(band_rows)
    for _ in range(24):
        row, col = int(rng.choice(rows)), int(rng.integers(0, size))
        height, width = int(rng.integers(4, 14)), int(rng.integers(10, 60))
        image[row : row + height, col : col + width] = np.array(spec.body) * rng.uniform(0.3, 0.7)
    if spec.shape == "cylinder":
        caps = face_v < 0
        image[caps] = spec.cap
        yy, xx = np.mgrid[0:size, 0:size]
        for cap in range(2):
            centre_x, centre_y = (cap + 0.5) / 2 * size, size * (1 - 1 / 6)
            radius = np.hypot((xx - centre_x) / 0.24, (yy - centre_y) / 0.16) / size
            image[(np.abs(radius - 0.8) < 0.04) & caps[:, None]] *= 0.75
    regions, along = shape.texture_regions(size)
    image = 0.5 * image + 0.5 * REGION_TINTS[regions]
    image *= (1 - 0.4 * along)[..., None]
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 6)
    image *= 1 + 0.06 * noise[..., None] / (noise.std() + 1e-9)
    return np.clip(image, 0, 255).astype(np.uint8)


class SyntheticObject:
    """An object of the synthetic set: spec, shape, mesh (with uvs), texture, samples."""

    def __init__(self, spec, subdivisions=8):
        self.spec = spec
        self.name = spec.name
        self.shape = OBJECT_SHAPES[spec.shape](spec.size)
        self.vertices, self.faces, self.uvs = self.shape.mesh(subdivisions)
        self.texture = object_texture(spec, self.shape)

    def signed_distance(self, points):
        return self.shape.signed_distance(points)

    def corners(self):
        """objCorners3DRest: the 8 corners (8, 3) m of the axis-aligned box, object frame."""
        return self.shape.corners()

    def sample_surface(self, count, seed=0):
        """Area-weighted surface points (count, 3) m in the object frame (points.xyz)."""
        rng = np.random.default_rng(_stable_seed("points", self.name, seed))
        a, b, c = (self.vertices[self.faces[:, k]] for k in range(3))
        area = np.linalg.norm(np.cross(b - a, c - a), axis=1) / 2
        face = rng.choice(len(area), size=count, p=area / area.sum())
        r1, r2 = rng.random(count), rng.random(count)
        flip = r1 + r2 > 1
        r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
        return a[face] + r1[:, None] * (b - a)[face] + r2[:, None] * (c - a)[face]


def build_objects(names=None, subdivisions=8):
    """SyntheticObject for each name (all of OBJECT_SPECS by default), by name."""
    names = list(OBJECT_SPECS) if names is None else names
    unknown = [n for n in names if n not in OBJECT_SPECS]
    if unknown:
        raise KeyError(f"unknown synthetic objects {unknown}; known: {sorted(OBJECT_SPECS)}")
    return {n: SyntheticObject(OBJECT_SPECS[n], subdivisions) for n in names}
