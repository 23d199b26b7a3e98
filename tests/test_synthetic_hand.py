"""The synthetic MANO-format hand: format, mesh, anthropometry, poses; and mesh export."""

import logging
import os
from collections import Counter

import numpy as np
import pytest
import torch
import trimesh

from handobj_d2.mano import HandLayer, ManoLayer, load_mano_model, read_mano_file
from handobj_d2.mano.synthetic import build_synthetic_mano, write_synthetic_mano
from handobj_d2.mesh_io import export_mesh

# MANO's arrays and shapes (MANO_RIGHT.pkl of mano_v1_2), written out independently of io.py.
MANO_SHAPES = {
    "v_template": (778, 3),
    "f": (1538, 3),
    "J_regressor": (16, 778),
    "kintree_table": (2, 16),
    "weights": (778, 16),
    "posedirs": (778, 3, 135),
    "shapedirs": (778, 3, 10),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}
MANO_PARENTS = [2**32 - 1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
# manopth's fingertip vertices (thumb, index, middle, ring, pinky) and palm-centre vertices.
TIPS = {"thumb": 745, "index": 317, "middle": 444, "ring": 556, "pinky": 673}
PALM_CENTRE = (95, 22)
# HandLayer joints (manopth order): wrist, then per finger knuckle, two joints and the tip.
FINGER_JOINTS = {"thumb": (1, 2, 3, 4), "index": (5, 6, 7, 8), "middle": (9, 10, 11, 12),
                 "ring": (13, 14, 15, 16), "pinky": (17, 18, 19, 20)}  # fmt: skip
MANO_CHAINS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12),
               "thumb": (13, 14, 15)}  # fmt: skip

# Adult hand anthropometry, centimetres (ranges cover roughly the 5th-95th percentiles of
# adult men and women). Joint-to-joint bone lengths of the phalanges after Buryanov & Kotiuk
# (2010, "Proportions of hand segments", Int. J. Morphol.: index 39.8/22.4/15.8 mm, middle
# 44.6/26.3/17.4, ring 41.4/25.7/17.3, little 32.7/18.1/16.0 for proximal/middle/distal bones);
# the distal segment here runs from the joint to the fingertip surface, so it adds the pad
# (about 4-6 mm). Hand length (wrist crease to middle fingertip) 17-21 cm, hand breadth at the
# knuckles 7.5-9.5 cm, palm length 9-11 cm (ANSUR II summary statistics).
SEGMENT_RANGES_CM = {
    "index": ((3.4, 4.6), (1.9, 2.8), (1.7, 2.5)),
    "middle": ((3.9, 5.2), (2.3, 3.2), (1.9, 2.7)),
    "ring": ((3.6, 4.8), (2.2, 3.1), (1.8, 2.6)),
    "pinky": ((2.7, 3.8), (1.5, 2.3), (1.6, 2.4)),
    "thumb": ((3.4, 5.0), (2.6, 3.6), (2.0, 3.0)),  # metacarpal, proximal, distal + pad
}


def _unit(v):
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def model():
    return build_synthetic_mano("right")


@pytest.fixture(scope="module")
def layer():
    return HandLayer("")


def _rest(layer):
    with torch.no_grad():
        vertices, joints = layer(torch.zeros(1, 48), torch.zeros(1, 10))
    return vertices[0].double().numpy(), joints[0].double().numpy()


def _palm_frame(joints):
    forward = _unit(joints[9] - joints[0])
    across = joints[5] - joints[17]
    across = _unit(across - (across @ forward) * forward)
    return forward, across, np.cross(across, forward)  # normal: out of a right palm


def _fist_pose(joints):
    """(1, 48) fist built from the rest joints alone: every finger joint flexed about
    bone x palm_normal (knuckles 80 deg, middle joints 90, distal 57); the thumb opposed by
    57 deg about across x normal and curled about bone x pad (pad half-way between the palm
    normal and the fingers) by 52 and 69 deg."""
    _, across, normal = _palm_frame(joints)
    pose = np.zeros((16, 3))
    angles = {"thumb": (1.0, 0.9, 1.2)}
    for finger, ids in FINGER_JOINTS.items():
        flexion = angles.get(finger, (1.4, 1.57, 1.0))
        for level, chain_joint in enumerate(MANO_CHAINS[finger]):
            bone = _unit(joints[ids[level + 1]] - joints[ids[level]])
            pad = normal if finger != "thumb" else _unit(normal + np.cross(normal, bone))
            axis = _unit(np.cross(bone, pad))
            if finger == "thumb" and level == 0:
                axis = _unit(np.cross(across, normal))
            pose[chain_joint] = flexion[level] * axis
    return torch.as_tensor(pose.reshape(1, 48), dtype=torch.float32)


def _edges(faces):
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return directed, Counter(map(tuple, np.sort(directed, 1)))


def _close_wrist(vertices, faces):
    """Cap the one boundary loop with a fan around its centroid -> closed vertices, faces."""
    directed, counts = _edges(faces)
    boundary = [tuple(e) for e in directed if counts[tuple(sorted(e))] == 1]
    centre = len(vertices)
    cap = np.array([(b, a, centre) for a, b in boundary])  # reversed: outward like the rest
    vertices = np.vstack([vertices, vertices[np.unique(cap[:, :2])].mean(0)])
    return vertices, np.vstack([faces, cap])


def _winding_numbers(points, vertices, faces):
    """Generalised winding number of points (P, 3) w.r.t. a closed mesh (van Oosterom-Strackee
    solid angles): ~1 inside, ~0 outside."""
    a, b, c = (vertices[faces[:, k]][None] - points[:, None] for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = (
        la * lb * lc
        + np.einsum("pfi,pfi->pf", a, b) * lc
        + np.einsum("pfi,pfi->pf", b, c) * la
        + np.einsum("pfi,pfi->pf", c, a) * lb
    )
    return (2 * np.arctan2(det, den)).sum(1) / (4 * np.pi)


# ---------------------------------------------------------------------------------------------
# Format


def test_fields_have_mano_shapes_and_normalisations(model):
    for key, shape in MANO_SHAPES.items():
        assert model[key].shape == shape, key
    assert list(model["kintree_table"][0]) == MANO_PARENTS
    assert list(model["kintree_table"][1]) == list(range(16))
    weights, regressor = model["weights"], model["J_regressor"]
    assert weights.min() >= 0 and regressor.min() >= 0
    np.testing.assert_allclose(weights.sum(1), 1, atol=1e-9)
    np.testing.assert_allclose(regressor.sum(1), 1, atol=1e-9)
    components = model["hands_components"]
    np.testing.assert_allclose(components @ components.T, np.eye(45), atol=1e-9)
    # A right hand in MANO's rest frame: fingers along -x from the wrist, thumb towards +z.
    joints = regressor @ model["v_template"]
    assert joints[0, 0] > 0.08 and (joints[[3, 6, 9, 12], 0] < -0.02).all()
    assert joints[15, 2] > joints[3, 2] > joints[12, 2] > joints[9, 2]
    # Pose correctives stay small: at most 5 mm per unit of a pose feature.
    assert np.abs(model["posedirs"]).max() < 0.005


def test_deterministic_cached_copies():
    first = build_synthetic_mano()
    first["v_template"][:] = 0  # the caller's copy: must not reach the cache
    second = build_synthetic_mano()
    assert np.abs(second["v_template"]).max() > 0.05
    for key in MANO_SHAPES:
        np.testing.assert_array_equal(second[key], build_synthetic_mano()[key])
    with pytest.raises(ValueError, match="side"):
        build_synthetic_mano("middle")


def test_empty_model_path_warns_and_gives_the_synthetic_hand(caplog):
    with caplog.at_level(logging.WARNING, logger="handobj_d2.mano.io"):
        loaded = load_mano_model("")
    assert "SYNTHETIC" in caplog.text and "MODEL.MANO.MODEL_PATH" in caplog.text
    expected = build_synthetic_mano("right")
    for key in MANO_SHAPES:
        np.testing.assert_array_equal(loaded[key], expected[key])


def test_written_pickle_round_trips(tmp_path):
    path = str(tmp_path / "models" / "MANO_RIGHT.pkl")
    assert write_synthetic_mano(path) == path
    assert os.listdir(tmp_path / "models") == ["MANO_RIGHT.pkl"]  # no temporary left
    loaded = read_mano_file(path)
    expected = build_synthetic_mano("right")
    for key in MANO_SHAPES:
        np.testing.assert_array_equal(loaded[key], expected[key])
    # The file is a MANO model: ManoLayer reads it from a folder like the official one.
    vertices, _ = ManoLayer(mano_root=str(tmp_path / "models"), use_pca=False)(torch.zeros(1, 48))
    np.testing.assert_allclose(vertices[0].numpy(), expected["v_template"] * 1000, atol=1e-3)


def test_left_hand_is_the_mirrored_right_hand():
    right, left = build_synthetic_mano("right"), build_synthetic_mano("left")
    np.testing.assert_allclose(left["v_template"], right["v_template"] * [-1, 1, 1])
    # A mirrored pose (axis-angle (x, y, z) -> (x, -y, -z)) gives the mirrored hand, with the
    # PCA components, the relaxed mean pose, shape and pose blend shapes all in play.
    torch.manual_seed(0)
    coefficients = torch.randn(2, 3 + 12) * 0.5
    betas = torch.randn(2, 10)
    mirror_root = torch.tensor([1.0, -1.0, -1.0] + [1.0] * 12)
    kwargs = dict(mano_path="", ncomps=12, flat_hand_mean=False, center_idx=0)
    right_v, right_j = ManoLayer(side="right", **kwargs)(coefficients, betas)
    left_layer = ManoLayer(side="left", fingertip_vertices=list(TIPS.values()), **kwargs)
    left_v, left_j = left_layer(coefficients * mirror_root, betas)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(left_v, right_v * flip, atol=1e-3, rtol=0)  # millimetres
    torch.testing.assert_close(left_j, right_j * flip, atol=1e-3, rtol=0)
    # Faces are re-wound so that the mirrored surface still faces outwards.
    closed = trimesh.Trimesh(*_close_wrist(left["v_template"], left["f"]), process=False)
    assert closed.volume > 0


# ---------------------------------------------------------------------------------------------
# Mesh


def test_mesh_is_a_manifold_closed_but_for_the_wrist_and_outward(model):
    vertices, faces = model["v_template"], model["f"]
    assert faces.min() == 0 and faces.max() == len(vertices) - 1
    assert len(np.unique(faces)) == len(vertices)  # every vertex is used
    directed, counts = _edges(faces)
    assert set(counts.values()) == {1, 2}
    assert len(set(map(tuple, directed))) == len(directed)  # consistent winding
    boundary = [e for e, n in counts.items() if n == 1]
    assert len(boundary) == 16  # MANO's wrist opening is a 16-edge loop too
    wrist = np.unique(boundary)
    assert len(wrist) == 16 and np.ptp(vertices[wrist, 0]) < 0.005  # one loop across the wrist
    closed_v, closed_f = _close_wrist(vertices, faces)
    closed = trimesh.Trimesh(closed_v, closed_f, process=False)
    assert closed.is_watertight and closed.is_winding_consistent
    # Outward normals: positive volume, in the range of adult hands measured by water
    # displacement (Hughes & Lau 2008, Australas. Phys. Eng. Sci. Med.: 312 and 494 ml).
    assert 300e-6 < closed.volume < 550e-6
    # Every joint lies inside the surface.
    joints = model["J_regressor"] @ vertices
    assert (_winding_numbers(joints, closed_v, closed_f) > 0.5).all()


def test_fingertip_and_palm_vertices(model, layer):
    vertices, joints = _rest(layer)
    for finger, tip in TIPS.items():
        knuckle, *_, tip_joint = FINGER_JOINTS[finger]
        np.testing.assert_array_equal(joints[tip_joint], vertices[tip])
        # The tip vertex is the finger's extreme point along the finger.
        direction = _unit(vertices[tip] - joints[knuckle])
        on_finger = model["weights"][:, MANO_CHAINS[finger][2]] > 0.5
        assert vertices[tip] @ direction >= (vertices[on_finger] @ direction).max() - 1e-9
    # manopth's left middle fingertip (445) is next to the right one (444).
    assert np.linalg.norm(vertices[445] - vertices[444]) < 0.006
    # Palm centre vertices: one on each side of the palm, half-way between wrist and knuckles.
    forward, _, normal = _palm_frame(joints)
    palmar, dorsal = vertices[list(PALM_CENTRE)]
    assert (palmar - dorsal) @ normal > 0.02
    centre = (palmar + dorsal) / 2
    assert abs(centre @ forward - joints[9] @ forward / 2) < 0.01


def test_anthropometric_proportions(model, layer):
    vertices, joints = _rest(layer)
    for finger, ranges in SEGMENT_RANGES_CM.items():
        ids = FINGER_JOINTS[finger]
        lengths = np.linalg.norm(np.diff(joints[list(ids)], axis=0), axis=1) * 100
        for length, (low, high) in zip(lengths, ranges):
            assert low <= length <= high, (finger, lengths)
    hand_length = np.linalg.norm(joints[12] - joints[0]) * 100
    assert 18 <= hand_length <= 20
    palm_length = np.linalg.norm(joints[9] - joints[0]) * 100
    assert 9 <= palm_length <= 10.5
    # Breadth across the knuckles (thumb excluded), the vertices within 1 cm of the knuckle line.
    forward, across, _ = _palm_frame(joints)
    thumb = model["weights"][:, 13:16].sum(1) > 0.5
    knuckle_line = joints[[5, 9, 13, 17]] @ forward
    near = np.abs(vertices @ forward - knuckle_line.mean()) < 0.01
    breadth = np.ptp(vertices[near & ~thumb] @ across) * 100
    assert 7.5 <= breadth <= 9.5
    # Finger order across the palm: index, middle, ring, pinky (radial to ulnar).
    assert list(np.argsort(-(joints[[5, 9, 13, 17]] @ across))) == [0, 1, 2, 3]


def test_flat_hand_is_flat_and_the_fist_closes(layer):
    vertices, joints = _rest(layer)
    forward, across, normal = _palm_frame(joints)
    # Flat: every joint within 2.5 cm of the palm plane; fingertips far from the palm centre.
    assert np.abs((joints - joints[0]) @ normal).max() < 0.025
    tips = [4, 8, 12, 16, 20]
    palm_centre = vertices[list(PALM_CENTRE)].mean(0)
    assert (np.linalg.norm(joints[tips] - palm_centre, axis=1) > 0.07).all()
    with torch.no_grad():
        fist_v, fist_j = layer(_fist_pose(joints), torch.zeros(1, 10))
    fist_v, fist_j = fist_v[0].double().numpy(), fist_j[0].double().numpy()
    fist_centre = fist_v[list(PALM_CENTRE)].mean(0)
    distances = np.linalg.norm(fist_j[tips] - fist_centre, axis=1)
    assert (distances < 0.05).all(), distances
    # The fingers curl to the palm side, and bending keeps the skin in one piece: linear blend
    # skinning stretches the back of a joint bent by 90 degrees about twofold, no more.
    assert ((fist_j[[8, 12, 16, 20]] - fist_centre) @ normal > 0.01).all()
    edges = np.concatenate([layer.faces.numpy()[:, [0, 1]], layer.faces.numpy()[:, [1, 2]]])
    rest = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    posed = np.linalg.norm(fist_v[edges[:, 0]] - fist_v[edges[:, 1]], axis=1)
    assert (posed / rest).max() < 2.5


def test_mean_pose_is_a_relaxed_curl():
    flat = ManoLayer(mano_path="", use_pca=False, flat_hand_mean=True)
    relaxed = ManoLayer(mano_path="", use_pca=False, flat_hand_mean=False)
    with torch.no_grad():
        (flat_v, flat_j), (relaxed_v, relaxed_j) = (m(torch.zeros(1, 48)) for m in (flat, relaxed))
    tips = [4, 8, 12, 16, 20]

    def tip_distances(vertices, joints):
        return np.linalg.norm(
            (joints[0, tips] - vertices[0, list(PALM_CENTRE)].mean(0)).numpy(), axis=1
        )

    ratio = tip_distances(relaxed_v, relaxed_j) / tip_distances(flat_v, flat_j)
    assert ((ratio > 0.6) & (ratio < 0.95)).all(), ratio  # every finger curls, a little


def test_gradients_reach_pose_and_shape(layer):
    pose = (torch.randn(2, 48) * 0.3).requires_grad_()
    betas = torch.randn(2, 10).requires_grad_()
    vertices, joints = layer(pose, betas)
    (vertices.square().sum() + joints.square().sum()).backward()
    assert torch.isfinite(pose.grad).all() and torch.isfinite(betas.grad).all()
    assert (pose.grad[:, 3:].abs().sum(0) > 0).all()  # every finger rotation matters
    assert (betas.grad.abs().sum(0) > 0).all()


def test_shape_components_change_the_hand_smoothly(layer):
    _, rest_joints = _rest(layer)
    rest_length = np.linalg.norm(rest_joints[12] - rest_joints[0])
    betas = torch.zeros(10, 10)
    betas[range(10), range(10)] = 2.0
    with torch.no_grad():
        vertices, joints = layer(torch.zeros(10, 48), betas)
    rest_vertices, _ = _rest(layer)
    moved = np.linalg.norm(vertices.double().numpy() - rest_vertices, axis=-1).max(1)
    assert (moved > 0.001).all() and (moved < 0.03).all()  # each does something, gently
    # The first component is size: two units of it lengthen the hand by 5-15 %.
    length = np.linalg.norm(joints[0, 12] - joints[0, 0]).item()
    assert 1.05 < length / rest_length < 1.15


# ---------------------------------------------------------------------------------------------
# Mesh files


@pytest.mark.parametrize("extension", ["obj", "ply"])
def test_export_and_reload(tmp_path, model, extension):
    path = str(tmp_path / f"hand.{extension}")
    colours = np.tile([0.9, 0.7, 0.6], (778, 1))
    assert export_mesh(path, model["v_template"], model["f"], vertex_colors=colours) == path
    assert os.listdir(tmp_path) == [f"hand.{extension}"]
    mesh = trimesh.load(path, process=False, force="mesh")
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    assert vertices.shape == (778, 3) and faces.shape == (1538, 3)
    np.testing.assert_allclose(vertices, model["v_template"], atol=1e-6)
    np.testing.assert_array_equal(faces, model["f"])


def test_mesh_file_errors(tmp_path, model):
    with pytest.raises(ValueError, match=r"hand\.stl.*extension"):
        export_mesh(str(tmp_path / "hand.stl"), model["v_template"], model["f"])
    with pytest.raises(ValueError, match="faces index"):
        export_mesh(str(tmp_path / "hand.obj"), model["v_template"][:10], model["f"])
