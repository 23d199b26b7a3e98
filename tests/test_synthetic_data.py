"""The synthetic HO3D-format set, checked independently of the generator: from the files on disk
(meta pickles, segmentation through the HO3D decoder, the exported object models) with
HO3D's own conventions, the MANO layer, trimesh and OpenCV polygon filling."""

import json
import pickle

import cv2
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from handobj_d2.data.segmentation import decode_segmentation
from handobj_d2.data.synthetic import generate_dataset, prepare_output
from handobj_d2.data.synthetic.scene import MAX_TILT, MAX_TURN, sample_hand_rotation
from handobj_d2.data.synthetic.videos import (
    ground_truth_joints,
    read_video_ground_truth,
    video_ground_truth_boxes,
)
from handobj_d2.data.video import find_videos
from handobj_d2.geometry import HO3D_TO_MANOPTH, JOINT_PARENTS, MANOPTH_TO_HO3D
from handobj_d2.mano import ManoLayer
from handobj_d2.utils.io import read_image

WIDTH, HEIGHT = 256, 192
FLIP = np.array([1.0, -1.0, -1.0])  # OpenGL <-> OpenCV


def _generate(root, overwrite=False, **options):
    """tools/make_synthetic_dataset.py's job: check the folder, then generate into it."""
    prepare_output(str(root), overwrite)
    generate_dataset(str(root), image_size=(WIDTH, HEIGHT), progress=False, **options)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    _generate(root, train=6, evaluation=3, videos=1, frames_per_video=6)
    return root


def _names(root, split):
    return (root / f"{split}.txt").read_text().split()


def _meta(root, split, name):
    sequence, frame = name.split("/")
    with open(root / split / sequence / "meta" / f"{frame}.pkl", "rb") as f:
        return pickle.load(f)


def _masks(root, split, name):
    sequence, frame = name.split("/")
    return decode_segmentation(str(root / split / sequence / "seg" / f"{frame}.png"), "ho3d")


def _project(points_gl, K):
    """OpenGL camera points (N, 3) -> pixels (N, 2) through K, after the flip to OpenCV."""
    uvw = (points_gl * FLIP) @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def _object_model(root, name):
    return trimesh.load(root / "models" / name / "textured_simple.obj", force="mesh")


def _object_points_gl(meta, points):
    R = cv2.Rodrigues(meta["objRot"].astype(np.float64))[0]
    return points @ R.T + meta["objTrans"]


def _winding_number(points, mesh):
    """Generalised winding number of points (N, 3) w.r.t. a closed triangle mesh: ~1 inside,
    ~0 outside (Van Oosterom-Strackee solid angles summed over the faces)."""
    a, b, c = (mesh.vertices[mesh.faces[:, k]][None] - points[:, None] for k in range(3))
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
    numerator = np.einsum("nfk,nfk->nf", a, np.cross(b, c))
    denominator = (
        la * lb * lc
        + np.einsum("nfk,nfk->nf", a, b) * lc
        + np.einsum("nfk,nfk->nf", b, c) * la
        + np.einsum("nfk,nfk->nf", c, a) * lb
    )
    return (2 * np.arctan2(numerator, denominator)).sum(1) / (4 * np.pi)


def test_tree_has_every_file_and_field(dataset):
    train, evaluation = _names(dataset, "train"), _names(dataset, "evaluation")
    assert len(train) == 6 and len(evaluation) == 3
    for split, names in (("train", train), ("evaluation", evaluation)):
        for name in names:
            sequence, frame = name.split("/")
            image = read_image(str(dataset / split / sequence / "rgb" / f"{frame}.png"))
            assert image.shape == (HEIGHT, WIDTH, 3)
            meta = _meta(dataset, split, name)
            assert meta["camMat"].shape == (3, 3) and meta["objRot"].shape == (3, 1)
            assert meta["objTrans"].shape == (3,) and meta["objCorners3DRest"].shape == (8, 3)
            assert (dataset / "models" / meta["objName"] / "points.xyz").is_file()
            if split == "train":
                assert meta["handPose"].shape == (48,) and meta["handBeta"].shape == (10,)
                assert meta["handTrans"].shape == (3,) and meta["handJoints3D"].shape == (21, 3)
            else:
                assert meta["handJoints3D"].shape == (3,)
                assert meta["handBoundingBox"].shape == (4,)
            # OpenGL camera frame: everything in front of the camera has negative z.
            assert meta["objTrans"][2] < 0 and np.atleast_2d(meta["handJoints3D"])[:, 2].max() < 0


def test_mano_parameters_reproduce_the_joints(dataset):
    layer = ManoLayer(mano_path="", use_pca=False, flat_hand_mean=True, center_idx=None)
    for name in _names(dataset, "train"):
        meta = _meta(dataset, "train", name)
        _, joints = layer(
            torch.as_tensor(meta["handPose"])[None],
            torch.as_tensor(meta["handBeta"])[None],
            torch.as_tensor(meta["handTrans"])[None],
        )
        joints_ho3d = joints[0].numpy()[MANOPTH_TO_HO3D] / 1000
        np.testing.assert_allclose(joints_ho3d, meta["handJoints3D"], atol=2e-5)
        # Like HO3D's, the hand-object pair is 0.4-0.8 m from the camera (the wrist a hand's
        # length from the pair's centre at most).
        assert 0.2 < -meta["handJoints3D"][0, 2] < 1.0


def _hidden_by(points, mesh):
    """Whether the segment from the camera (origin) to each point (N, 3) crosses the mesh
    before the point (Moller-Trumbore ray-triangle intersection, OpenCV camera frame)."""
    a, b, c = (mesh.vertices[mesh.faces[:, k]] for k in range(3))
    e1, e2 = b - a, c - a
    hidden = np.zeros(len(points), bool)
    for index, point in enumerate(points):
        p = np.cross(point, e2)
        det = (e1 * p).sum(1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1 / np.where(ok, det, 1), 0)
        t_vec = -a
        u = (t_vec * p).sum(1) * inv
        q = np.cross(t_vec, e1)
        v = (q * point).sum(1) * inv
        t = (e2 * q).sum(1) * inv  # position along the segment: 1 at the point
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6) & (t < 1 - 1e-6)
        hidden[index] = hit.any()
    return hidden


def test_projected_joints_land_on_the_hand(dataset):
    grow = np.ones((5, 5), np.uint8)  # 2 px of slack for tips on the silhouette
    hidden_count = 0
    for name in _names(dataset, "train"):
        meta = _meta(dataset, "train", name)
        hand, obj = _masks(dataset, "train", name)
        pixels = np.round(_project(meta["handJoints3D"], meta["camMat"])).astype(int)
        assert ((pixels >= 0) & (pixels < [WIDTH, HEIGHT])).all(), name
        # Joints lie inside the hand (tips on its surface): one in front of the object lands
        # on the hand's pixels, one behind it on the object's.
        model = _object_model(dataset, meta["objName"])
        model.vertices = _object_points_gl(meta, model.vertices) * FLIP
        hidden = _hidden_by(meta["handJoints3D"] * FLIP, model)
        hand_grown = cv2.dilate(hand.astype(np.uint8), grow).astype(bool)
        obj_grown = cv2.dilate(obj.astype(np.uint8), grow).astype(bool)
        rows, cols = pixels[:, 1], pixels[:, 0]
        assert hand_grown[rows, cols][~hidden].all(), (name, np.flatnonzero(~hidden))
        # (A hidden joint may still show the hand: another finger in front of the object.)
        assert (obj_grown | hand_grown)[rows, cols][hidden].all(), (name, np.flatnonzero(hidden))
        hidden_count += hidden.sum()
    # The object hides some joints, not most of them.
    assert hidden_count < 0.5 * 21 * len(_names(dataset, "train"))


def test_projected_object_corners_bound_its_segmentation(dataset):
    for split in ("train", "evaluation"):
        for name in _names(dataset, split):
            meta = _meta(dataset, split, name)
            _, obj = _masks(dataset, split, name)
            rows, cols = np.nonzero(obj)
            assert len(rows) > 0, name
            corners = _project(_object_points_gl(meta, meta["objCorners3DRest"]), meta["camMat"])
            assert cols.min() >= corners[:, 0].min() - 1 and cols.max() <= corners[:, 0].max() + 1
            assert rows.min() >= corners[:, 1].min() - 1 and rows.max() <= corners[:, 1].max() + 1


def test_object_pose_reproduces_its_silhouette(dataset):
    for split in ("train", "evaluation"):
        for name in _names(dataset, split):
            meta = _meta(dataset, split, name)
            hand, obj = _masks(dataset, split, name)
            model = _object_model(dataset, meta["objName"])
            pixels = _project(_object_points_gl(meta, model.vertices), meta["camMat"])
            silhouette = np.zeros((HEIGHT, WIDTH), np.uint8)
            for triangle in np.round(pixels[model.faces] * 16).astype(np.int32):
                cv2.fillConvexPoly(silhouette, triangle, 1, lineType=cv2.LINE_8, shift=4)
            # The hand hides part of the object: compare the visible part.
            expected = silhouette.astype(bool) & ~hand
            iou = (expected & obj).sum() / (expected | obj).sum()
            assert iou > 0.9, (name, iou)


def _finger_of_vertices(vertices, joints):
    """Finger (0 thumb .. 4 pinky) of each vertex (N, 3): the finger of its nearest bone
    among the 20 bones of the 21 joints (manopth order); -1 for the palm (wrist bones)."""
    children = np.arange(1, 21)
    start, end = joints[JOINT_PARENTS[children]], joints[children]
    along = end - start
    t = np.einsum("nbk,bk->nb", vertices[:, None] - start[None], along) / (along**2).sum(1)
    closest = start[None] + np.clip(t, 0, 1)[..., None] * along[None]
    bone = np.linalg.norm(vertices[:, None] - closest, axis=-1).argmin(1)
    finger = (children[bone] - 1) // 4
    return np.where(JOINT_PARENTS[children[bone]] == 0, -1, finger)


def test_grasps_touch_without_interpenetration(dataset):
    layer = ManoLayer(mano_path="", use_pca=False, flat_hand_mean=True, center_idx=None)
    for name in _names(dataset, "train"):
        meta = _meta(dataset, "train", name)
        vertices, joints = layer(
            torch.as_tensor(meta["handPose"])[None],
            torch.as_tensor(meta["handBeta"])[None],
            torch.as_tensor(meta["handTrans"])[None],
        )
        model = _object_model(dataset, meta["objName"])
        # Hand in the object frame (OpenGL camera -> object).
        R = cv2.Rodrigues(meta["objRot"].astype(np.float64))[0]
        vertices, joints = (
            (x[0].numpy().astype(np.float64) / 1000 - meta["objTrans"]) @ R
            for x in (vertices, joints)
        )
        inside = _winding_number(vertices, model) > 0.5
        assert inside.mean() < 0.01, (name, inside.mean())
        # Fingers on the surface: the thumb and two more fingers within 3 mm of the object
        # (dense surface samples, about a millimetre apart).
        samples, _ = trimesh.sample.sample_surface(model, 40000, seed=0)
        distance, _ = cKDTree(samples).query(vertices)
        touching = set(_finger_of_vertices(vertices, joints)[distance < 0.003]) - {-1}
        assert 0 in touching and len(touching) >= 3, (name, touching)


def test_evaluation_ground_truth_files(dataset):
    names = _names(dataset, "evaluation")
    xyz = json.loads((dataset / "evaluation_xyz.json").read_text())
    verts = json.loads((dataset / "evaluation_verts.json").read_text())
    assert len(xyz) == len(verts) == len(names)
    for name, joints, vertices in zip(names, xyz, verts):
        meta = _meta(dataset, "evaluation", name)
        joints, vertices = np.array(joints), np.array(vertices)
        assert joints.shape == (21, 3) and vertices.shape == (778, 3)
        np.testing.assert_allclose(joints[0], meta["handJoints3D"], atol=1e-6)
        box = meta["handBoundingBox"]
        pixels = _project(vertices, meta["camMat"])
        inside = (pixels >= box[:2] - 1) & (pixels <= box[2:] + 1)
        assert inside.all(1).mean() > 0.99


def test_video_frames_change_smoothly(dataset):
    (video,) = find_videos([str(dataset / "videos")])
    (folder,) = find_videos([str(dataset / "video_frames")])
    with open(dataset / "video_ground_truth" / f"{video.name}.pkl", "rb") as f:
        truth = pickle.load(f)
    decoded = [image for _, image in video]
    frames = [image for _, image in folder]
    assert len(decoded) == len(frames) == len(truth["frames"]) == 6
    joints = np.stack([m["handJoints3D"] for m in truth["frames"]])
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max()
    assert 1e-4 < step < 0.015  # moves, by less than 1.5 cm a frame
    objects = np.stack([m["objTrans"] for m in truth["frames"]])
    assert np.linalg.norm(np.diff(objects, axis=0), axis=-1).max() < 0.015
    images = np.stack(frames).astype(np.float64)
    consecutive = np.abs(np.diff(images, axis=0)).mean()
    assert consecutive < 6  # grey levels, the background stays, the hand moves a little
    # The mp4 holds the same frames (lossy codec).
    assert np.abs(np.stack(decoded) - images).mean() < 6
    # Pseudo-label ground truth is kept apart from the labeled splits.
    listed = " ".join(_names(dataset, "train") + _names(dataset, "evaluation"))
    assert video.name not in listed


def test_video_ground_truth_reads_back_as_joints_and_boxes(dataset):
    (video,) = find_videos([str(dataset / "videos")])
    metas = read_video_ground_truth(str(dataset), video.name)
    boxes = video_ground_truth_boxes(str(dataset))
    assert list(boxes) == [video.name] and list(boxes[video.name]) == [str(i) for i in range(6)]
    for index, meta in enumerate(metas):
        joints = ground_truth_joints(meta)  # OpenCV, manopth order
        np.testing.assert_allclose(joints[MANOPTH_TO_HO3D], meta["handJoints3D"] * FLIP)
        for part, points in (("hand", meta["handJoints3D"]), ("object", meta["objCorners3D"])):
            pixels = _project(points, meta["camMat"])
            expected = [*pixels.min(0), *pixels.max(0), 1.0]  # tight box, score 1
            np.testing.assert_allclose(boxes[video.name][str(index)][part], expected)


def test_same_arguments_give_identical_annotations(dataset, tmp_path):
    _generate(tmp_path / "again", train=6, evaluation=3, videos=1, frames_per_video=6)
    metas = sorted(dataset.glob("*/*/meta/*.pkl"))
    assert len(metas) == 9
    for path in metas:
        again = tmp_path / "again" / path.relative_to(dataset)
        assert again.read_bytes() == path.read_bytes(), path
    truth = sorted(dataset.glob("video_ground_truth/*.pkl"))
    for path in truth:
        assert (tmp_path / "again" / path.relative_to(dataset)).read_bytes() == path.read_bytes()


def test_tool_refuses_to_mix_or_delete_other_folders(dataset, tmp_path):
    with pytest.raises(ValueError, match="not empty; pass --overwrite"):
        _generate(dataset, train=1)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a synthetic set"):
        _generate(other, overwrite=True, train=1)
    assert (other / "keep.jpg").is_file()


def test_views_show_the_back_or_side_of_the_hand_tilted_at_most_max_tilt(dataset):
    for name in _names(dataset, "train"):
        joints = (_meta(dataset, "train", name)["handJoints3D"] * FLIP)[HO3D_TO_MANOPTH]
        forward = joints[9] - joints[0]  # wrist -> middle knuckle, OpenCV frame
        tilt = np.arcsin(abs(forward[2]) / np.linalg.norm(forward))
        assert tilt <= MAX_TILT + 1e-6, (name, np.degrees(tilt))
        # Right hand: index knuckle x middle knuckle (from the little finger's) points out of
        # the palm; it faces away from the camera (+z) or is turned at most MAX_TURN.
        normal = np.cross(joints[5] - joints[17], forward)
        assert normal[2] / np.linalg.norm(normal) >= np.cos(MAX_TURN) - 1e-6, name


def test_hand_rotations_show_the_back_or_side_and_every_in_plane_direction():
    rng = np.random.default_rng(0)
    palm_axes = cv2.Rodrigues(np.array([0.3, -1.2, 0.7]))[0]  # across, forward, normal
    forward_z, normal_z, angles = [], [], []
    for _ in range(400):
        R = sample_hand_rotation(rng, palm_axes)
        torch.testing.assert_close(R @ R.T, np.eye(3), atol=1e-12, rtol=0)
        assert np.linalg.det(R) == pytest.approx(1.0)
        forward, normal = R @ palm_axes[:, 1], R @ palm_axes[:, 2]
        forward_z.append(forward[2])
        normal_z.append(normal[2])
        angles.append(np.arctan2(forward[1], forward[0]))
    assert np.abs(forward_z).max() <= np.sin(MAX_TILT) + 1e-9
    assert np.abs(forward_z).max() > np.sin(MAX_TILT) * 0.95  # the whole range is used
    # The palm normal points away from the camera (+z) or at most MAX_TURN from it; the
    # normal's z is cos(turn) cos(tilt), negative (palm half towards the camera) for turns
    # beyond 90 degrees: (MAX_TURN - 90) / MAX_TURN of the views, 1/4 for 120 degrees.
    normal_z = np.array(normal_z)
    assert normal_z.min() >= np.cos(MAX_TURN) - 1e-9
    assert normal_z.min() < np.cos(MAX_TURN) * 0.9  # the whole range is used
    expected = (MAX_TURN - np.pi / 2) / MAX_TURN
    assert abs(np.mean(normal_z < 0) - expected) < 0.07
    # In-plane direction of the fingers: every 45-degree sector is visited.
    sectors = np.floor((np.array(angles) + np.pi) / (np.pi / 4)).astype(int) % 8
    assert set(sectors) == set(range(8))


def _surface_regions(obj):
    """Region of each mesh triangle from its geometry alone: box faces +x, -x, +y, -y, +z, -z
    by the outward normal; cylinders the side's quarters by the angle around z, then the caps
    at +z and -z."""
    a, b, c = (obj.vertices[obj.faces[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    axis = np.abs(normal).argmax(1)
    if obj.shape.name == "box":
        return 2 * axis + (normal[np.arange(len(axis)), axis] < 0)
    centre = (a + b + c) / 3
    quarter = np.floor((np.arctan2(centre[:, 1], centre[:, 0]) % (2 * np.pi)) / (np.pi / 2))
    cap = np.where(normal[:, 2] > 0, 4, 5)
    return np.where(np.abs(normal[:, 2]) > 0.99, cap, np.minimum(quarter, 3)).astype(int)


def test_object_faces_are_told_apart_by_their_colour():
    # A box's corners (the control points) can only be named from the image if its faces look
    # different; same for a cylinder's turn about its axis. Each face's (quarter's, cap's) mean
    # texture colour, looked up through the mesh's uvs, differs from every other by > 30 RGB.
    from handobj_d2.data.synthetic.objects import build_objects

    for name, obj in build_objects().items():
        regions = _surface_regions(obj)
        uv = obj.uvs[obj.faces].mean(1)  # triangle centres in texture space
        size = obj.texture.shape[0]
        column = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
        row = np.clip(((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
        colours = obj.texture[row, column].astype(float)
        means = np.stack([colours[regions == r].mean(0) for r in range(6)])
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1) + 1e3 * np.eye(6)
        assert gaps.min() > 30, (name, np.round(means))


def test_each_half_of_the_shift_is_a_domain():
    from handobj_d2.data.synthetic import get_domain
    from handobj_d2.data.synthetic.scene import sample_betas, sample_skin

    rng = np.random.default_rng(0)
    appearance, shape = get_domain("shifted_appearance"), get_domain("shifted_shape")
    # shifted scenes, lights and skin, default hand shapes (betas in [-1, 1])
    assert appearance.backgrounds == ("checker", "neon_blobs", "outdoor")
    assert appearance.light_tint == 0.2
    betas = np.array([sample_betas(rng, appearance) for _ in range(200)])
    assert np.abs(betas).max() <= 1.0 and np.abs(betas).max() > 0.95
    assert max(sample_skin(rng, appearance)[0] for _ in range(50)) < 0.87  # darker than 0.91
    # default scenes, lights and skin, shifted hand shapes (betas in [-3, 3])
    assert shape.backgrounds == ("wood", "office", "fabric")
    assert shape.light_tint == 0.05
    assert max(sample_skin(rng, shape)[0] for _ in range(50)) > 0.87
    betas = np.array([sample_betas(rng, shape) for _ in range(200)])
    assert np.abs(betas).max() <= 3.0 and np.abs(betas).max() > 2.9
