"""ManoLayer against manopth's recorded outputs, loading without chumpy, and the hand layer."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handobj_d2.mano import HandLayer, ManoLayer, load_mano_model, read_mano_file

FIXTURES = Path(__file__).parent / "fixtures" / "mano"
RANDOM_MANO = str(FIXTURES / "mano_format_random_chumpy.pkl")
CASES = json.loads((FIXTURES / "manopth_public_cases.json").read_text())
REFERENCE = np.load(FIXTURES / "manopth_public_reference.npz")


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_manopth_to_a_thousandth_of_a_millimetre(case):
    layer = ManoLayer(mano_path=RANDOM_MANO, **CASES[case])
    pose, betas, trans = (
        torch.from_numpy(REFERENCE[f"{case}/{k}"]) for k in ("pose", "betas", "trans")
    )
    vertices, joints = layer(pose, betas, trans)
    np.testing.assert_allclose(vertices.numpy(), REFERENCE[f"{case}/verts"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(joints.numpy(), REFERENCE[f"{case}/joints"], atol=1e-3, rtol=0)
    # A call with the pose only uses the file's own betas and no translation.
    vertices, joints = layer(pose)
    np.testing.assert_allclose(
        vertices.numpy(), REFERENCE[f"{case}/verts_default"], atol=1e-3, rtol=0
    )
    np.testing.assert_allclose(
        joints.numpy(), REFERENCE[f"{case}/joints_default"], atol=1e-3, rtol=0
    )


def test_loads_the_chumpy_pickle_without_chumpy():
    # chumpy must not be needed even where it is installed: make importing it fail.
    code = (
        "import sys; sys.modules['chumpy'] = None\n"
        "from handobj_d2.mano import read_mano_file\n"
        f"m = read_mano_file({RANDOM_MANO!r})\n"
        "print(m['v_template'].shape, m['J_regressor'].shape, type(m['J_regressor']).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["(778,", "3)", "(16,", "778)", "ndarray"]


def test_plain_numpy_mano_file_gives_the_same_hand(tmp_path):
    plain = tmp_path / "MANO_RIGHT.pkl"
    with open(plain, "wb") as f:
        pickle.dump(read_mano_file(RANDOM_MANO), f)
    pose = torch.from_numpy(REFERENCE["axisang_flat_center0/pose"])
    expected = REFERENCE["axisang_flat_center0/verts_default"]
    # A folder is accepted too: the side picks MANO_RIGHT.pkl inside it.
    layer = ManoLayer(mano_root=str(tmp_path), use_pca=False, center_idx=0)
    np.testing.assert_allclose(layer(pose)[0].numpy(), expected, atol=1e-3, rtol=0)


def test_missing_or_wrong_mano_file_explains_where_to_get_mano(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"nowhere/MANO_RIGHT\.pkl.*mano\.is\.tue\.mpg\.de.*MODEL\.MANO\.MODEL_PATH",
    ):
        load_mano_model(str(tmp_path / "nowhere" / "MANO_RIGHT.pkl"))
    not_pickle = tmp_path / "notes.pkl"
    not_pickle.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.pkl: cannot read it as a MANO model file"):
        load_mano_model(str(not_pickle))
    incomplete = tmp_path / "incomplete.pkl"
    with open(incomplete, "wb") as f:
        pickle.dump({"v_template": np.zeros((778, 3))}, f)
    with pytest.raises(ValueError, match=r"incomplete\.pkl: not a MANO model file, missing fields"):
        load_mano_model(str(incomplete))
    bad_shape = tmp_path / "bad_shape.pkl"
    model = read_mano_file(RANDOM_MANO)
    model["weights"] = model["weights"][:, :15]
    with open(bad_shape, "wb") as f:
        pickle.dump(model, f)
    with pytest.raises(
        ValueError, match=r"bad_shape\.pkl: MANO field 'weights' has shape \(778, 15\)"
    ):
        load_mano_model(str(bad_shape))


def _random_pose(batch, seed):
    generator = torch.Generator().manual_seed(seed)
    return 0.4 * torch.randn(batch, 48, generator=generator), torch.randn(
        batch, 10, generator=generator
    )


def test_rot6d_and_rotmat_modes_agree_with_axis_angle():
    pose, betas = _random_pose(3, seed=1)
    reference = ManoLayer(mano_path=RANDOM_MANO, use_pca=False)(pose, betas)[0]
    rotations = torch.from_numpy(
        Rotation.from_rotvec(pose.view(-1, 3).double().numpy()).as_matrix()
    ).float()
    rotations = rotations.view(3, 16, 3, 3)
    # rot6d root: the first two columns of the root rotation, then the 45 joint angles.
    rot6d = torch.cat([rotations[:, 0, :, 0], rotations[:, 0, :, 1], pose[:, 3:]], 1)
    for robust in (False, True):
        layer = ManoLayer(
            mano_path=RANDOM_MANO, use_pca=False, root_rot_mode="rot6d", robust_rot=robust
        )
        torch.testing.assert_close(layer(rot6d, betas)[0], reference, atol=1e-3, rtol=0)
    layer = ManoLayer(mano_path=RANDOM_MANO, use_pca=False, joint_rot_mode="rotmat")
    torch.testing.assert_close(layer(rotations, betas)[0], reference, atol=1e-3, rtol=0)


def test_translation_centring_palm_root_and_shared_betas():
    pose, betas = _random_pose(2, seed=2)
    layer = ManoLayer(mano_path=RANDOM_MANO, use_pca=False)
    vertices, joints = layer(pose, betas)
    trans = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.05, 1.0]])
    moved_vertices, moved_joints = layer(pose, betas, trans)
    torch.testing.assert_close(moved_joints, joints + 1000 * trans[:, None], atol=1e-3, rtol=0)
    torch.testing.assert_close(moved_vertices, vertices + 1000 * trans[:, None], atol=1e-3, rtol=0)
    centred_vertices, centred_joints = ManoLayer(
        mano_path=RANDOM_MANO, use_pca=False, center_idx=9
    )(pose, betas)
    torch.testing.assert_close(centred_joints, joints - joints[:, 9:10], atol=1e-3, rtol=0)
    palm_vertices, palm_joints = layer(pose, betas, root_palm=torch.Tensor([1]))
    torch.testing.assert_close(
        palm_joints[:, 0], (vertices[:, 95] + vertices[:, 22]) / 2, atol=1e-3, rtol=0
    )
    torch.testing.assert_close(palm_joints[:, 1:], joints[:, 1:])
    shared = layer(pose, betas, share_betas=torch.Tensor([1]))[0]
    torch.testing.assert_close(shared, layer(pose, betas.mean(0, keepdim=True).expand(2, 10))[0])


def test_batch_rows_are_independent_and_dtype_follows_the_module():
    pose, betas = _random_pose(4, seed=3)
    layer = ManoLayer(mano_path=RANDOM_MANO, use_pca=False)
    batched = layer(pose, betas)[0]
    singles = torch.cat([layer(pose[i : i + 1], betas[i : i + 1])[0] for i in range(4)])
    torch.testing.assert_close(batched, singles, atol=1e-3, rtol=0)
    double = layer.double()(pose.double(), betas.double())[0]
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), batched, atol=1e-2, rtol=0)


def test_gradients_reach_pose_and_shape():
    pose, betas = _random_pose(2, seed=4)
    pose.requires_grad_(True)
    betas.requires_grad_(True)
    vertices, joints = HandLayer(RANDOM_MANO)(pose, betas)
    (vertices.square().sum() + joints.square().sum()).backward()
    assert pose.grad.abs().sum(0).gt(0).all(), "every pose parameter moves the mesh"
    assert betas.grad.abs().sum(0).gt(0).all(), "every shape parameter moves the mesh"


def test_zero_pose_gradient_is_finite():
    pose = torch.zeros(1, 48, requires_grad=True)
    vertices, _ = HandLayer(RANDOM_MANO)(pose, torch.zeros(1, 10))
    vertices.sum().backward()
    assert torch.isfinite(pose.grad).all()


def test_hand_layer_is_wrist_centred_metres_with_configurable_fingertips():
    pose, betas = _random_pose(2, seed=5)
    tips = (728, 353, 442, 576, 694)
    vertices, joints = HandLayer(RANDOM_MANO, fingertip_vertices=tips)(pose, betas)
    reference_vertices, reference_joints = ManoLayer(
        mano_path=RANDOM_MANO, use_pca=False, center_idx=0
    )(pose, betas)
    torch.testing.assert_close(vertices * 1000, reference_vertices, atol=1e-3, rtol=0)
    torch.testing.assert_close(joints[:, 0], torch.zeros(2, 3))
    # Fingertips in manopth order: thumb, index, middle, ring, pinky at joints 4, 8, 12, 16, 20.
    torch.testing.assert_close(joints[:, [4, 8, 12, 16, 20]], vertices[:, list(tips)])
    torch.testing.assert_close(
        joints[:, [1, 2, 3, 5]] * 1000, reference_joints[:, [1, 2, 3, 5]], atol=1e-3, rtol=0
    )
