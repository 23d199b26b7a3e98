"""MANO as differentiable PyTorch layers.

``ManoLayer`` is a drop-in equivalent of ``manopth.manolayer.ManoLayer`` (same arguments,
defaults, forward signature, outputs in millimetres, joint order and fingertip vertices).
``HandLayer`` is the model's hand: full axis-angle pose, flat hand mean, metres, wrist-centred.
"""

import os

import numpy as np
import torch
from torch import nn

from ..geometry import (
    HO3D_TO_MANOPTH,
    axis_angle_to_matrix,
    project_to_rotation,
    rot6d_to_matrix,
    rot6d_to_matrix_robust,
)
from .io import load_mano_model

# Fingertip vertices (thumb, index, middle, ring, pinky) manopth appends to MANO's 16 joints.
MANOPTH_FINGERTIPS = {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)}
# MANO's kinematic tree: three levels of five chains (index, middle, pinky, ring, thumb).
_LEVELS = ([1, 4, 7, 10, 13], [2, 5, 8, 11, 14], [3, 6, 9, 12, 15])
# Joints listed root, level 1, level 2, level 3 -> MANO joint order.
_LEVEL_TO_MANO = [0, 1, 6, 11, 2, 7, 12, 3, 8, 13, 4, 9, 14, 5, 10, 15]
_PALM_VERTICES = (95, 22)  # manopth's root_palm joint: the mean of these two vertices


def _pose_feature(rotmats):
    """Pose-corrective blend-shape input: flattened (R - I) of the 15 finger joints (B, 135)."""
    eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    return (rotmats - eye).flatten(1)


class ManoLayer(nn.Module):
    """manopth-compatible MANO layer.

    Args (as manopth): center_idx, flat_hand_mean, ncomps, side, mano_root, use_pca,
        root_rot_mode ("axisang" | "rot6d"), joint_rot_mode ("axisang" | "rotmat"), robust_rot.
        Extra: mano_path (a MANO file or "" for the synthetic hand; overrides mano_root),
        fingertip_vertices (5 vertex ids; manopth's for ``side`` by default).

    forward(th_pose_coeffs, th_betas=zeros(1), th_trans=zeros(1), root_palm=0, share_betas=0)
    -> vertices (B, 778, 3), joints (B, 21, 3) in millimetres. Like manopth: a th_betas with one
    element selects the model file's own betas; a non-zero th_trans is added (and center_idx is
    then ignored); otherwise center_idx, when set, puts that joint at the origin.
    """

    def __init__(
        self,
        center_idx=None,
        flat_hand_mean=True,
        ncomps=6,
        side="right",
        mano_root="mano/models",
        use_pca=True,
        root_rot_mode="axisang",
        joint_rot_mode="axisang",
        robust_rot=False,
        mano_path=None,
        fingertip_vertices=None,
    ):
        super().__init__()
        if root_rot_mode not in ("axisang", "rot6d"):
            raise ValueError(f"root_rot_mode must be 'axisang' or 'rot6d', got {root_rot_mode!r}")
        if joint_rot_mode not in ("axisang", "rotmat"):
            raise ValueError(
                f"joint_rot_mode must be 'axisang' or 'rotmat', got {joint_rot_mode!r}"
            )
        self.center_idx = center_idx
        self.side = side
        self.use_pca = use_pca
        self.flat_hand_mean = flat_hand_mean
        self.root_rot_mode = root_rot_mode
        self.joint_rot_mode = joint_rot_mode
        self.robust_rot = robust_rot
        self.rot = 6 if root_rot_mode == "rot6d" else 3
        self.ncomps = ncomps if use_pca else 45
        if mano_path is None:
            mano_path = os.path.join(mano_root, f"MANO_{side.upper()}.pkl")
        model = load_mano_model(mano_path, side)
        self.fingertip_vertices = list(fingertip_vertices or MANOPTH_FINGERTIPS[side])

        def buffer(name, array, dtype=torch.float32):
            self.register_buffer(name, torch.as_tensor(np.asarray(array), dtype=dtype))

        buffer("th_betas", model.get("betas", np.zeros(model["shapedirs"].shape[-1]))[None])
        buffer("th_shapedirs", model["shapedirs"])
        buffer("th_posedirs", model["posedirs"])
        buffer("th_v_template", model["v_template"][None])
        buffer("th_J_regressor", model["J_regressor"])
        buffer("th_weights", model["weights"])
        buffer("th_faces", model["f"].astype(np.int64), torch.long)
        hands_mean = np.zeros(45) if flat_hand_mean else model["hands_mean"]
        buffer("th_hands_mean", hands_mean[None])
        buffer("th_selected_comps", model["hands_components"][: self.ncomps])
        self.kintree_parents = [int(p) if p < 16 else -1 for p in model["kintree_table"][0]]

    def shape(self, betas):
        """Shaped rest mesh (B, 778, 3) and MANO joints (B, 16, 3) in metres for betas (B, 10)."""
        v_shaped = self.th_v_template + torch.einsum("vck,bk->bvc", self.th_shapedirs, betas)
        return v_shaped, torch.einsum("jv,bvc->bjc", self.th_J_regressor, v_shaped)

    def articulate(self, rotmats, v_shaped, joints):
        """Linear blend skinning with pose correctives.

        rotmats (B, 16, 3, 3): root then the 15 finger joints (MANO order), each relative to its
        parent; v_shaped (B, 778, 3), joints (B, 16, 3) from :meth:`shape`.
        Returns vertices (B, 778, 3) and posed MANO joints (B, 16, 3), metres, untranslated.
        """
        v_posed = v_shaped + torch.einsum(
            "vck,bk->bvc", self.th_posedirs, _pose_feature(rotmats[:, 1:])
        )
        # Global rotation and position of every joint, one tree level (five chains) at a time.
        rots, positions = [rotmats[:, :1]], [joints[:, :1]]
        parent_rot, parent_pos, parent_joint = rotmats[:, :1], joints[:, :1], joints[:, :1]
        for level in _LEVELS:
            offset = (joints[:, level] - parent_joint)[..., None]
            parent_pos = parent_pos + (parent_rot @ offset)[..., 0]
            parent_rot = parent_rot @ rotmats[:, level]
            parent_joint = joints[:, level]
            rots.append(parent_rot)
            positions.append(parent_pos)
        global_rot = torch.cat(rots, 1)[:, _LEVEL_TO_MANO]  # (B, 16, 3, 3)
        global_pos = torch.cat(positions, 1)[:, _LEVEL_TO_MANO]  # (B, 16, 3)
        # Skinning transforms map rest-pose points to posed ones: x -> R_j (x - J_j) + G_j.
        skin_trans = global_pos - (global_rot @ joints[..., None])[..., 0]
        blend_rot = torch.einsum("vj,bjrc->bvrc", self.th_weights, global_rot)
        blend_trans = torch.einsum("vj,bjc->bvc", self.th_weights, skin_trans)
        vertices = (blend_rot @ v_posed[..., None])[..., 0] + blend_trans
        return vertices, global_pos

    def add_fingertips(self, vertices, joints16, root_palm=False):
        """MANO joints (B, 16, 3) + fingertip vertices -> 21 joints in manopth's order (MANO's
        16 joints then the 5 tips is the HO3D order, hence the shared index list)."""
        if root_palm:
            palm = vertices[:, list(_PALM_VERTICES)].mean(1, keepdim=True)
            joints16 = torch.cat([palm, joints16[:, 1:]], 1)
        joints = torch.cat([joints16, vertices[:, self.fingertip_vertices]], 1)
        return joints[:, HO3D_TO_MANOPTH]

    def _rotations(self, th_pose_coeffs):
        """Pose input -> (B, 16, 3, 3) relative rotations in MANO joint order."""
        batch = th_pose_coeffs.shape[0]
        if self.use_pca or self.joint_rot_mode == "axisang":
            hand = th_pose_coeffs[:, self.rot : self.rot + self.ncomps]
            if self.use_pca:
                hand = hand @ self.th_selected_comps
            joint_rots = axis_angle_to_matrix((self.th_hands_mean + hand).view(batch, 15, 3))
            root = th_pose_coeffs[:, : self.rot]
            if self.root_rot_mode == "axisang":
                root_rot = axis_angle_to_matrix(root)
            elif self.robust_rot:
                root_rot = rot6d_to_matrix_robust(root)
            else:
                root_rot = rot6d_to_matrix(root)
            return torch.cat([root_rot[:, None], joint_rots], 1)
        if th_pose_coeffs.dim() != 4 or th_pose_coeffs.shape[1:] != (16, 3, 3):
            raise ValueError(
                f"joint_rot_mode='rotmat' expects (B, 16, 3, 3) rotations, got {tuple(th_pose_coeffs.shape)}"
            )
        return project_to_rotation(th_pose_coeffs)

    def forward(
        self,
        th_pose_coeffs,
        th_betas=torch.zeros(1),
        th_trans=torch.zeros(1),
        root_palm=torch.Tensor([0]),
        share_betas=torch.Tensor([0]),
    ):
        batch = th_pose_coeffs.shape[0]
        rotmats = self._rotations(th_pose_coeffs)
        if th_betas is None or th_betas.numel() == 1:
            betas = self.th_betas.expand(batch, -1)
        else:
            betas = (
                th_betas.mean(0, keepdim=True).expand_as(th_betas)
                if bool(share_betas)
                else th_betas
            )
        vertices, joints16 = self.articulate(rotmats, *self.shape(betas))
        joints = self.add_fingertips(vertices, joints16, bool(root_palm))
        if th_trans is None or bool(torch.norm(th_trans) == 0):
            if self.center_idx is not None:
                centre = joints[:, self.center_idx : self.center_idx + 1]
                joints, vertices = joints - centre, vertices - centre
        else:
            joints, vertices = joints + th_trans[:, None], vertices + th_trans[:, None]
        return vertices * 1000, joints * 1000


class HandLayer(nn.Module):
    """The model's MANO hand: axis-angle pose (48, flat hand mean) and betas (10) -> wrist-centred
    vertices (B, 778, 3) and joints (B, 21, 3, manopth order) in metres, in the frame of the
    global rotation (the OpenCV camera frame in this project).
    """

    def __init__(self, mano_path="", fingertip_vertices=MANOPTH_FINGERTIPS["right"], side="right"):
        super().__init__()
        self.mano = ManoLayer(
            use_pca=False,
            flat_hand_mean=True,
            side=side,
            mano_path=mano_path,
            fingertip_vertices=fingertip_vertices,
        )

    @property
    def faces(self):
        """(1538, 3) long tensor of vertex ids."""
        return self.mano.th_faces

    def forward_rotmats(self, rotmats, mano_shape):
        """rotmats (B, 16, 3, 3) relative joint rotations (root first), mano_shape (B, 10)."""
        vertices, joints16 = self.mano.articulate(rotmats, *self.mano.shape(mano_shape))
        joints = self.mano.add_fingertips(vertices, joints16)
        wrist = joints[:, :1]
        return vertices - wrist, joints - wrist

    def forward(self, mano_pose, mano_shape):
        """mano_pose (B, 48) axis-angle radians, mano_shape (B, 10) -> (vertices, joints) metres."""
        return self.forward_rotmats(axis_angle_to_matrix(mano_pose.view(-1, 16, 3)), mano_shape)


def build_hand_layer(cfg):
    """HandLayer from MODEL.MANO.MODEL_PATH and MODEL.MANO.FINGERTIP_VERTICES."""
    return HandLayer(cfg.MODEL.MANO.MODEL_PATH, tuple(cfg.MODEL.MANO.FINGERTIP_VERTICES))
