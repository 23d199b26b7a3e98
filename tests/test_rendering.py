"""The rasteriser against closed forms: lattice-point counts (Pick's theorem), ray-plane and
ray-sphere depths, Lambert's law, perspective-correct texture lookups and occlusion."""

import numpy as np
import pytest
import trimesh

from handobj_d2 import rendering
from handobj_d2.rendering import Lighting, Mesh, overlay, render_meshes

FOCAL, CX, CY = 200.0, 50.0, 40.0
K = np.array([[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1.0]])
SIZE = (120, 100)  # width, height
FLAT_LIGHT = Lighting(ambient=1.0, diffuse=0.0)


def _lift(pixels, depth):
    """Pixels (N, 2) at depth z -> camera points (N, 3) that project onto them through K."""
    pixels = np.asarray(pixels, dtype=np.float64)
    return np.concatenate(
        [(pixels - [CX, CY]) / FOCAL * depth, np.full((len(pixels), 1), depth)], 1
    )


def _cube(centre, half):
    box = trimesh.creation.box(extents=[2 * half] * 3)
    return box.vertices + centre, box.faces


@pytest.mark.parametrize("chunk", [rendering.FRAGMENT_CHUNK, 50])
def test_triangle_covers_its_lattice_points(monkeypatch, chunk):
    monkeypatch.setattr(rendering, "FRAGMENT_CHUNK", chunk)
    # Pixel corners (10, 10), (110, 10), (10, 90): area 4000, 200 lattice points on the
    # boundary, so by Pick's theorem 4000 + 200 / 2 + 1 = 4101 pixel centres are covered.
    vertices = _lift([(10, 10), (110, 10), (10, 90)], 1.5)
    mesh = Mesh(vertices, [[0, 1, 2]], colors=(0.2, 0.4, 0.6))
    out = render_meshes(K, SIZE, [mesh], lighting=FLAT_LIGHT)
    covered = out.mesh_id == 0
    assert covered.sum() == 4101
    assert (out.mesh_id[~covered] == -1).all()
    # The hypotenuse x / 100 + y / 80 = 1 (relative to (10, 10)) bounds the covered pixels.
    rows, cols = np.nonzero(covered)
    assert ((cols - 10) / 100 + (rows - 10) / 80 <= 1 + 1e-9).all()
    np.testing.assert_allclose(out.depth[covered], 1.5, rtol=1e-6)
    assert np.isinf(out.depth[~covered]).all()
    assert (out.image[covered] == [51, 102, 153]).all()
    assert (out.image[~covered] == 0).all()


def test_cube_silhouette_and_depth_seen_face_on():
    # A cube on the optical axis shows only its front face (z = 1.0, x, y in +-0.1): pixels
    # CX +- 20, CY +- 20, i.e. 41 x 41 pixel centres, all at depth 1.0.
    vertices, faces = _cube(np.array([0.0, 0.0, 1.1]), 0.1)
    for cull in (False, True):
        out = render_meshes(K, SIZE, [Mesh(vertices, faces, cull_back_faces=cull)])
        rows, cols = np.nonzero(out.mesh_id == 0)
        assert len(rows) == 41 * 41
        assert (cols.min(), cols.max(), rows.min(), rows.max()) == (30, 70, 20, 60)
        np.testing.assert_allclose(out.depth[rows, cols], 1.0, rtol=1e-6)


def test_depth_of_a_tilted_plane_is_perspective_correct():
    # Plane z = z0 + a x: the ray through pixel u meets it at z = z0 / (1 - a (u - cx) / f).
    z0, a = 1.0, 0.8
    corners = np.array([[-0.2, -0.15], [0.2, -0.15], [0.2, 0.15], [-0.2, 0.15]])
    vertices = np.concatenate([corners, (z0 + a * corners[:, :1])], 1)
    mesh = Mesh(vertices, [[0, 1, 2], [0, 2, 3]])
    out = render_meshes(K, SIZE, [mesh])
    rows, cols = np.nonzero(out.mesh_id == 0)
    assert len(rows) > 1000
    expected = z0 / (1 - a * (cols - CX) / FOCAL)
    np.testing.assert_allclose(out.depth[rows, cols], expected, rtol=1e-5)


def test_texture_lookup_is_perspective_correct():
    # A quad tilted in depth, textured left half black, right half white: the colour edge is
    # the projection of the quad's 3D mid-line (u = 0.5), not the midpoint on screen.
    left, right = np.array([-0.15, 0.0, 0.6]), np.array([0.25, 0.0, 1.4])
    vertices = np.array([left + [0, -0.1, 0], right + [0, -0.1, 0], right + [0, 0.1, 0],
                         left + [0, 0.1, 0]])  # fmt: skip
    uvs = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    texture = np.zeros((4, 64, 3), np.uint8)
    texture[:, 32:] = 255
    mesh = Mesh(vertices, [[0, 1, 2], [0, 2, 3]], uvs=uvs, texture=texture)
    out = render_meshes(K, SIZE, [mesh], lighting=FLAT_LIGHT)
    row = out.image[int(CY), :, 0].astype(int)
    covered = np.flatnonzero(out.mesh_id[int(CY)] == 0)
    mid = (left + right) / 2
    edge = CX + FOCAL * mid[0] / mid[2]  # 3D midpoint projected
    screen_mid = (CX + FOCAL * left[0] / left[2] + CX + FOCAL * right[0] / right[2]) / 2
    assert abs(edge - screen_mid) > 5  # the two hypotheses are told apart
    dark = covered[row[covered] < 128]
    bright = covered[row[covered] >= 128]
    assert dark.max() < bright.min()
    assert abs((dark.max() + bright.min()) / 2 - edge) <= 1.0


def test_texture_orientation_follows_obj_convention():
    # uv (0, 1) is the texture's top-left texel; a quad facing the camera maps it to the top
    # left of the image (image rows grow downwards like the camera's y axis).
    vertices = _lift([(20, 20), (80, 20), (80, 70), (20, 70)], 1.0)
    uvs = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    texture = np.zeros((2, 2, 3), np.uint8)
    texture[0, 0] = (255, 0, 0)  # top left red
    texture[1, 1] = (0, 0, 255)  # bottom right blue
    mesh = Mesh(vertices, [[0, 1, 2], [0, 2, 3]], uvs=uvs, texture=texture)
    out = render_meshes(K, SIZE, [mesh], lighting=FLAT_LIGHT)
    assert tuple(out.image[22, 22]) == (255, 0, 0)
    assert tuple(out.image[68, 78]) == (0, 0, 255)
    assert tuple(out.image[22, 78]) == (0, 0, 0)


def test_nearer_mesh_occludes_in_any_order():
    far_v, far_f = _cube(np.array([0.0, 0.0, 1.5]), 0.1)
    near_v, near_f = _cube(np.array([0.05, 0.0, 0.9]), 0.05)
    far, near = Mesh(far_v, far_f, colors=(1, 0, 0)), Mesh(near_v, near_f, colors=(0, 1, 0))
    first = render_meshes(K, SIZE, [far, near])
    second = render_meshes(K, SIZE, [near, far])
    # The near cube's front face (z = 0.85): x in [0, 0.1] -> columns 50..73, y in +-0.05 ->
    # rows 29..51 (pixel centres inside 40 +- 11.76).
    rows, cols = np.nonzero(first.mesh_id == 1)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (50, 73, 29, 51)
    assert ((first.mesh_id == 1) == (second.mesh_id == 0)).all()
    assert ((first.mesh_id == 0) == (second.mesh_id == 1)).all()
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_allclose(first.depth[rows, cols], 0.85, rtol=1e-6)


def test_triangles_behind_the_near_plane_are_dropped():
    behind = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, -0.5]])
    out = render_meshes(K, SIZE, [Mesh(behind, [[0, 1, 2]])])
    assert (out.mesh_id == -1).all()
    assert (out.image == 0).all()


def test_back_faces_culled_or_shaded_two_sided():
    # Counter-clockwise seen from the camera = normal towards the camera (right-hand rule with
    # y down): (b - a) x (c - a) has negative z for this order.
    vertices = _lift([(20, 20), (20, 70), (80, 20)], 1.0)
    assert np.cross(vertices[1] - vertices[0], vertices[2] - vertices[0])[2] < 0
    front, back = Mesh(vertices, [[0, 1, 2]]), Mesh(vertices, [[0, 2, 1]])
    light = Lighting(ambient=0.1, diffuse=0.9)  # at the camera, along the view axis
    shown = [render_meshes(K, SIZE, [m], lighting=light) for m in (front, back)]
    np.testing.assert_array_equal(shown[0].image, shown[1].image)
    assert (shown[0].image[shown[0].mesh_id == 0] == 255).all()  # 0.1 + 0.9 * cos 0
    culled = [Mesh(vertices, f, cull_back_faces=True) for f in ([[0, 1, 2]], [[0, 2, 1]])]
    assert (render_meshes(K, SIZE, culled[:1]).mesh_id == 0).sum() > 1000
    assert (render_meshes(K, SIZE, culled[1:]).mesh_id == -1).all()


@pytest.mark.parametrize("angle", [0.3, 1.0, 2.0])
def test_lambert_shading_of_a_flat_face(angle):
    # Face normal -z (towards the camera); the light tilted by ``angle`` from it:
    # intensity = ambient + diffuse * max(0, cos(angle)).
    vertices = _lift([(20, 20), (20, 70), (80, 20)], 1.0)
    direction = np.array([np.sin(angle), 0.0, -np.cos(angle)])
    light = Lighting(ambient=0.2, diffuse=0.7, direction=direction, colour=np.array([1, 0.5, 1]))
    mesh = Mesh(vertices, [[0, 1, 2]], colors=(0.8, 0.8, 0.4), smooth=False)
    out = render_meshes(K, SIZE, [mesh], lighting=light)
    intensity = 0.2 + 0.7 * max(np.cos(angle), 0)
    expected = np.round(np.array([0.8, 0.4, 0.4]) * intensity * 255)
    assert (np.abs(out.image[out.mesh_id == 0].astype(int) - expected) <= 1).all()


def test_smooth_sphere_follows_its_analytic_normals():
    centre, radius = np.array([0.0, 0.0, 1.0]), 0.15
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    light = Lighting(ambient=0.1, diffuse=0.9, direction=np.array([0.0, -0.6, -0.8]))
    mesh = Mesh(sphere.vertices + centre, sphere.faces, colors=(1, 1, 1), smooth=True)
    out = render_meshes(K, SIZE, [mesh], lighting=light, background=(0, 0, 1.0))
    rows, cols = np.nonzero(out.mesh_id == 0)
    # Ray through each pixel meets the sphere: nearest root of |s d - c|^2 = r^2.
    rays = np.stack([(cols - CX) / FOCAL, (rows - CY) / FOCAL, np.ones(len(rows))], 1)
    dc, dd = rays @ centre, (rays * rays).sum(1)
    disc = dc**2 - dd * (centre @ centre - radius**2)
    # Rays passing within 0.85 r of the centre: away from the faceted silhouette.
    inner = disc > (1 - 0.85**2) * dd * radius**2
    s = (dc - np.sqrt(np.maximum(disc, 0))) / dd
    points = rays * s[:, None]
    normals = (points - centre) / radius
    expected = 255 * (0.1 + 0.9 * np.maximum(normals @ light.direction, 0))
    np.testing.assert_allclose(out.depth[rows, cols][inner], points[inner, 2], atol=2e-3)
    error = np.abs(out.image[rows, cols, 0].astype(float) - expected)[inner]
    assert error.mean() < 3 and error.max() < 12
    assert (out.image[out.mesh_id == -1] == [0, 0, 255]).all()


def test_overlay_blends_only_covered_pixels():
    vertices = _lift([(20, 20), (20, 70), (80, 20)], 1.0)
    out = render_meshes(K, SIZE, [Mesh(vertices, [[0, 1, 2]], colors=(1, 1, 1))], FLAT_LIGHT)
    photo = np.full((SIZE[1], SIZE[0], 3), 100, np.uint8)
    blended = overlay(photo, out, alpha=0.25)
    assert (blended[out.mesh_id == 0] == round(0.75 * 100 + 0.25 * 255)).all()
    assert (blended[out.mesh_id == -1] == 100).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="faces index"):
        Mesh(np.zeros((3, 3)), [[0, 1, 3]])
    with pytest.raises(ValueError, match="uvs and texture"):
        Mesh(np.zeros((3, 3)), [[0, 1, 2]], uvs=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="colors"):
        Mesh(np.zeros((3, 3)), [[0, 1, 2]], colors=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="background"):
        render_meshes(K, SIZE, [], background=np.zeros((5, 5, 3)))
