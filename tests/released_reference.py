"""Test-only reference of the authors' released network (github.com/stevenlsw/Semi-Hand-Object:
``models.HONet``, ``networks/*.py``, ``utils/manolayer_ho3d.py``), written here from its
published structure so that the equivalence test needs no download.

Module and buffer names are the released ones, so ``ReleasedHONet().state_dict()`` has the
keys of the released checkpoint (less the ``honet.module.`` prefix). Widths can be reduced for
speed (``width``: the ResNet's base width, released 64; ``channels``: FPN and head width,
released 256); the layer structure is the released one.

``forward(images (N, 3, H, W) RGB in [0, 1], hand_boxes (N, 4), object_boxes (N, 4) px)`` ->
dict with ``joints2d`` (N, 21, 2) normalised to the hand box, ``joints3d`` (N, 21, 3) and
``vertices`` (N, 778, 3) in metres, root-relative, **OpenGL** frame (the released evaluation
output with zero roots), and the object decoder's per-cell ``object_x``, ``object_y``
(N, R, R, 21) normalised to the object box and ``object_conf`` (N, R, R, 21), control points
in the released order (:func:`released_control_points`).

The training side (``AuthorsHONet``, ``AuthorsHOModel``, their losses, ``AuthorsHO3D``: their
train-mode dataset) keeps their interfaces; :func:`write_fake_checkout` lays these classes out as
their repository's modules for tools/compare_with_authors.py.
"""

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import ops

RELEASED_FINGERTIPS = [728, 353, 442, 576, 694]
MANOPTH_ORDER = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]


# ----------------------------------------------------------------------------- backbone
class ResNetBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.leakyrelu = nn.LeakyReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.leakyrelu(self.bn1(self.conv1(x)))
        out = self.leakyrelu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.leakyrelu(out + residual)


def _resnet_layer(inplanes, planes, blocks, stride):
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * 4),
        )
    layers = [ResNetBottleneck(inplanes, planes, stride, downsample)]
    layers += [ResNetBottleneck(planes * 4, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class FPN(nn.Module):
    """ResNet-50 (LeakyReLU) layers wrapped as layer0..layer4, lateral 1x1 convs, bilinear
    top-down path, 3x3 smoothing of P4, P3, P2."""

    def __init__(self, width=64, channels=256):
        super().__init__()
        w = width
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w),
            nn.LeakyReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.layer1 = nn.Sequential(_resnet_layer(w, w, 3, 1))
        self.layer2 = nn.Sequential(_resnet_layer(4 * w, 2 * w, 4, 2))
        self.layer3 = nn.Sequential(_resnet_layer(8 * w, 4 * w, 6, 2))
        self.layer4 = nn.Sequential(_resnet_layer(16 * w, 8 * w, 3, 2))
        self.toplayer = nn.Conv2d(32 * w, channels, 1)
        self.smooth1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.smooth2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.smooth3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.latlayer1 = nn.Conv2d(16 * w, channels, 1)
        self.latlayer2 = nn.Conv2d(8 * w, channels, 1)
        self.latlayer3 = nn.Conv2d(4 * w, channels, 1)

    @staticmethod
    def _upsample_add(x, y):
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False) + y

    def forward(self, x):
        c2 = self.layer1(self.layer0(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        p5 = self.toplayer(c5)
        p4 = self._upsample_add(p5, self.latlayer1(c4))
        p3 = self._upsample_add(p4, self.latlayer2(c3))
        p2 = self._upsample_add(p3, self.latlayer3(c2))
        return [self.smooth3(p2), self.smooth2(p3), self.smooth1(p4), p5]


# ----------------------------------------------------------------------------- hand
class PreActBottleneck(nn.Module):
    """(BN, LeakyReLU, conv) x 3 through planes channels, out 2 * planes, identity skip."""

    def __init__(self, inplanes, planes):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 2, 1)
        self.leakyrelu = nn.LeakyReLU(inplace=True)

    def forward(self, x):
        out = self.conv1(self.leakyrelu(self.bn1(x)))
        out = self.conv2(self.leakyrelu(self.bn2(out)))
        out = self.conv3(self.leakyrelu(self.bn3(out)))
        return out + x


class Hourglass(nn.Module):
    """hg[n - 1] = [skip, down, up] (+ [inner] at n = 1), each a one-block Sequential."""

    def __init__(self, planes, depth):
        super().__init__()
        self.depth = depth

        def residual():
            return nn.Sequential(PreActBottleneck(2 * planes, planes))

        self.hg = nn.ModuleList(
            nn.ModuleList([residual() for _ in range(4 if i == 0 else 3)]) for i in range(depth)
        )

    def _forward(self, n, x):
        up1 = self.hg[n - 1][0](x)
        low1 = self.hg[n - 1][1](F.max_pool2d(x, 2, stride=2))
        low2 = self._forward(n - 1, low1) if n > 1 else self.hg[n - 1][3](low1)
        low3 = self.hg[n - 1][2](low2)
        return up1 + F.interpolate(low3, scale_factor=2)

    def forward(self, x):
        return self._forward(self.depth, x)


class ConvBnLeaky(nn.Module):
    def __init__(self, in_planes, out_planes):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1),
            nn.BatchNorm2d(out_planes),
            nn.LeakyReLU(inplace=True),
        )

    def forward(self, x):
        return self.block(x)


class HandRegHead(nn.Module):
    """One-stack hourglass -> 21 heatmaps -> spatial softmax (per-joint ``betas``) ->
    soft-argmax with the ``uu`` / ``vv`` cell-centre grids."""

    def __init__(self, roi_res=32, joint_nb=21, channels=256):
        super().__init__()
        self.out_res, self.joint_nb = roi_res, joint_nb
        self.betas = nn.Parameter(torch.ones(joint_nb, 1))
        vv, uu = torch.meshgrid(torch.arange(roi_res).float(), torch.arange(roi_res).float(),
                                indexing="ij")  # fmt: skip
        self.register_buffer("uu", (uu + 0.5) / roi_res)
        self.register_buffer("vv", (vv + 0.5) / roi_res)
        planes = channels // 2
        self.hg = nn.ModuleList([Hourglass(planes, 4)])
        self.res = nn.ModuleList([nn.Sequential(PreActBottleneck(channels, planes))])
        self.fc = nn.ModuleList([ConvBnLeaky(channels, channels)])
        self.score = nn.ModuleList([nn.Conv2d(channels, joint_nb, 1)])

    def forward(self, x):
        y = self.fc[0](self.res[0](self.hg[0](x)))
        latents = self.score[0](y).view(-1, self.joint_nb, self.out_res**2) * self.betas
        heatmaps = latents.softmax(2).view(-1, self.joint_nb, self.out_res, self.out_res)
        joints = torch.stack(
            [(heatmaps * self.uu).sum((2, 3)), (heatmaps * self.vv).sum((2, 3))], dim=2
        )
        return heatmaps, y, joints


class Residual(nn.Module):
    def __init__(self, num):
        super().__init__()
        self.bn = nn.BatchNorm2d(num)
        self.conv1 = nn.Conv2d(num, num // 2, 1)
        self.bn1 = nn.BatchNorm2d(num // 2)
        self.conv2 = nn.Conv2d(num // 2, num // 2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(num // 2)
        self.conv3 = nn.Conv2d(num // 2, num, 1)
        self.leakyrelu = nn.LeakyReLU(inplace=True)

    def forward(self, x):
        out = self.conv1(self.leakyrelu(self.bn(x)))
        out = self.conv2(self.leakyrelu(self.bn1(out)))
        out = self.conv3(self.leakyrelu(self.bn2(out)))
        return out + x


class HandEncoder(nn.Module):
    """1x1 convs of heatmaps + features, summed -> 4 x (2 residuals, 2x2 max-pool) -> flat."""

    def __init__(self, joint_nb=21, channels=256):
        super().__init__()
        self.heatmap_conv = nn.Conv2d(joint_nb, channels, 1)
        self.encoding_conv = nn.Conv2d(channels, channels, 1)
        self.reg = nn.ModuleList(Residual(channels) for _ in range(8))

    def forward(self, heatmaps, encoding):
        x = self.heatmap_conv(heatmaps) + self.encoding_conv(encoding)
        for block in range(4):
            x = self.reg[2 * block + 1](self.reg[2 * block](x))
            x = F.max_pool2d(x, 2, stride=2)
        return x.view(x.shape[0], -1)


# ----------------------------------------------------------------------------- rotations
def quaternion_to_matrix(quat):
    """(B, 4) w, x, y, z (normalised here) -> (B, 3, 3)."""
    w, x, y, z = (quat / quat.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack(
        [
            w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (w * y + x * z),
            2 * (w * z + x * y), w * w - x * x + y * y - z * z, 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (w * x + y * z), w * w - x * x - y * y + z * z,
        ],
        1,
    ).view(-1, 3, 3)  # fmt: skip


def rodrigues(axis_angle):
    """manopth's batch_rodrigues: (B, 3) -> (B, 3, 3) through a quaternion, angle of
    ``axis_angle + 1e-8``."""
    angle = (axis_angle + 1e-8).norm(dim=1, keepdim=True)
    half = angle * 0.5
    return quaternion_to_matrix(torch.cat([half.cos(), half.sin() * axis_angle / angle], 1))


def matrix_to_quaternion(m):
    """(B, 3, 3) -> (B, 4) w, x, y, z, from the largest of the four candidate pivots."""
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0],
                         m[:, 1, 0] - m[:, 0, 1]], 1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + 2 * m[:, 0, 0] - trace,
                         m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], 1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0],
                         1 + 2 * m[:, 1, 1] - trace, m[:, 1, 2] + m[:, 2, 1]], 1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0],
                         m[:, 1, 2] + m[:, 2, 1], 1 + 2 * m[:, 2, 2] - trace], 1),
        ],
        1,
    )  # fmt: skip
    pivots = torch.stack([1 + trace, 1 + 2 * m[:, 0, 0] - trace, 1 + 2 * m[:, 1, 1] - trace,
                          1 + 2 * m[:, 2, 2] - trace], 1)  # fmt: skip
    best = pivots.argmax(1)
    quat = candidates[torch.arange(len(m)), best]
    return quat / quat.norm(dim=1, keepdim=True)


def matrix_to_axis_angle(m):
    """(B, 3, 3) -> (B, 3) through a quaternion (the released ``mat2aa`` route)."""
    quat = matrix_to_quaternion(m)
    quat = torch.where(quat[:, :1] < 0, -quat, quat)
    sin_half = quat[:, 1:].norm(dim=1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, quat[:, :1])
    scale = torch.where(sin_half > 0, angle / sin_half.clamp_min(1e-30), torch.full_like(angle, 2))
    return quat[:, 1:] * scale


def rot6d_to_matrix(x):
    """Released ``rot6d2mat``: Gram-Schmidt of the two 3-vectors, columns b1, b2, b1 x b2."""
    b1 = F.normalize(x[:, 0:3])
    a2 = x[:, 3:6]
    b2 = F.normalize(a2 - (b1 * a2).sum(1, keepdim=True) * b1)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=1)], -1)


# ----------------------------------------------------------------------------- MANO
class ReleasedManoLayer(nn.Module):
    """``utils/manolayer_ho3d.ManoLayer(center_idx=0, flat_hand_mean=True, use_pca=False)``:
    axis-angle pose (B, 48) and betas (B, 10) -> vertices, joints (manopth order, HO3D
    fingertips) in metres, centred on the wrist."""

    def __init__(self, mano):
        super().__init__()

        def buffer(name, value, dtype=torch.float32):
            self.register_buffer(name, torch.as_tensor(value).to(dtype))

        buffer("th_betas", torch.zeros(1, 10))
        buffer("th_shapedirs", mano["shapedirs"])
        buffer("th_posedirs", mano["posedirs"])
        buffer("th_v_template", torch.as_tensor(mano["v_template"])[None])
        buffer("th_J_regressor", mano["J_regressor"])
        buffer("th_weights", mano["weights"])
        buffer("th_faces", mano["f"].astype("int64"), torch.long)
        buffer("th_hands_mean", torch.zeros(1, 45))
        buffer("th_selected_comps", mano["hands_components"])

    def forward(self, pose, betas):
        batch = pose.shape[0]
        full_pose = torch.cat([pose[:, :3], self.th_hands_mean + pose[:, 3:48]], 1)
        rots = rodrigues(full_pose.reshape(-1, 3)).view(batch, 16, 3, 3)
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_map = (rots[:, 1:] - eye).reshape(batch, -1)
        v_shaped = (
            torch.matmul(self.th_shapedirs, betas.transpose(1, 0)).permute(2, 0, 1)
            + self.th_v_template
        )
        j = torch.matmul(self.th_J_regressor, v_shaped)
        v_posed = v_shaped + torch.matmul(self.th_posedirs, pose_map.transpose(0, 1)).permute(
            2, 0, 1
        )

        def with_zeros(rot, trans):
            top = torch.cat([rot, trans[..., None]], -1)
            bottom = top.new_zeros(top.shape[:-2] + (1, 4))
            bottom[..., 0, 3] = 1
            return torch.cat([top, bottom], -2)

        transforms = [with_zeros(rots[:, 0], j[:, 0])[:, None]]
        parent, parent_j = transforms[0].expand(-1, 5, -1, -1), j[:, :1]
        for level in ([1, 4, 7, 10, 13], [2, 5, 8, 11, 14], [3, 6, 9, 12, 15]):
            local = with_zeros(rots[:, level], j[:, level] - parent_j)
            parent, parent_j = parent @ local, j[:, level]
            transforms.append(parent)
        reorder = [0, 1, 6, 11, 2, 7, 12, 3, 8, 13, 4, 9, 14, 5, 10, 15]
        results = torch.cat(transforms, 1)[:, reorder]  # (B, 16, 4, 4)
        joint_h = torch.cat([j, j.new_zeros(batch, 16, 1)], 2)
        rest = results @ joint_h[..., None]
        skinning = results - torch.cat([rest.new_zeros(batch, 16, 4, 3), rest], 3)
        blended = torch.einsum("bjrc,vj->bvrc", skinning, self.th_weights)
        v_h = torch.cat([v_posed, v_posed.new_ones(batch, v_posed.shape[1], 1)], 2)
        verts = (blended @ v_h[..., None])[..., :3, 0]
        joints = torch.cat([results[:, :, :3, 3], verts[:, RELEASED_FINGERTIPS]], 1)
        joints = joints[:, MANOPTH_ORDER]
        centre = joints[:, :1]
        return verts - centre, joints - centre


class ManoRegHead(nn.Module):
    def __init__(self, mano_layer, feature_size, neurons=(1024, 512)):
        super().__init__()
        sizes = [feature_size, *neurons]
        layers = []
        for i, o in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(i, o), nn.LeakyReLU(inplace=True)]
        self.mano_base_layer = nn.Sequential(*layers)
        self.pose_reg = nn.Linear(sizes[-1], 96)
        self.shape_reg = nn.Linear(sizes[-1], 10)
        self.mano_layer = mano_layer
        self.register_buffer("coord_change_mat", torch.diag(torch.tensor([1.0, -1.0, -1.0])))

    def predict(self, features):
        """Training outputs: rotation matrices (B, 16, 3, 3), shape (B, 10), root-relative
        vertices and joints in MANO's frame."""
        x = self.mano_base_layer(features)
        rotmats = rot6d_to_matrix(self.pose_reg(x).view(-1, 6))
        pose = matrix_to_axis_angle(rotmats).view(-1, 48)
        shape = self.shape_reg(x)
        verts, joints = self.mano_layer(pose, shape)
        return rotmats.view(-1, 16, 3, 3), shape, verts, joints


# ----------------------------------------------------------------------------- object, CR
class ObjRegHead(nn.Module):
    def __init__(self, channels=256, joint_nb=21):
        super().__init__()
        inter = channels // 2
        for b in (1, 2, 3):
            setattr(self, f"conv{b}_1", nn.Conv2d(channels, inter, 1))
            setattr(self, f"bn{b}_1", nn.BatchNorm2d(inter))
            setattr(self, f"conv{b}_2", nn.Conv2d(inter, channels, 3, padding=1))
            setattr(self, f"bn{b}_2", nn.BatchNorm2d(channels))
        self.out_conv = nn.Conv2d(channels, joint_nb * 3, 1)

    def forward(self, x):
        for b in (1, 2, 3):
            x = F.leaky_relu(getattr(self, f"bn{b}_1")(getattr(self, f"conv{b}_1")(x)), 0.1)
            x = F.leaky_relu(getattr(self, f"bn{b}_2")(getattr(self, f"conv{b}_2")(x)), 0.1)
        return self.out_conv(x)


def pose2d_layer(output, num_points=21, norm_factor=10.0):
    """Released ``Pose2DLayer`` at inference: (N, 3P, H, W) -> x, y (N, H, W, P) normalised to
    the box and confidences (N, H, W, P)."""
    n, _, h, w = output.shape
    out = output.view(n, 3 * num_points, h * w).transpose(0, 1).reshape(3 * num_points, -1)
    conf = out[:num_points].transpose(0, 1).reshape(n, h, w, num_points).sigmoid()
    x = out[num_points : 2 * num_points].transpose(0, 1).reshape(n, h, w, num_points)
    y = out[2 * num_points :].transpose(0, 1).reshape(n, h, w, num_points)
    grid_x = (torch.arange(w, dtype=out.dtype) + 0.5) / w * norm_factor
    grid_y = (torch.arange(h, dtype=out.dtype) + 0.5) / h * norm_factor
    x = (x + grid_x[None, None, :, None]) / norm_factor
    y = (y + grid_y[None, :, None, None]) / norm_factor
    return x, y, conf


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads=1, mlp_ratio=4.0):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.encode_value = nn.Conv2d(dim, dim, 1)
        self.encode_query = nn.Conv2d(dim, dim, 1)
        self.encode_key = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _attention(self, q, k, v):
        b, n, c = q.shape
        heads = [t.reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)
                 for t in (q, k, v)]  # fmt: skip
        attn = (heads[0] @ heads[1].transpose(-2, -1)) * (c // self.num_heads) ** -0.5
        return (attn.softmax(-1) @ heads[2]).transpose(1, 2).reshape(b, n, c)

    def forward(self, query, key):
        b, c, h, w = query.shape

        def tokens(x):
            return x.view(b, c, -1).permute(0, 2, 1)

        v = tokens(self.encode_value(key))
        q = tokens(self.encode_query(query))
        k = tokens(self.encode_key(key))
        x = tokens(query) + self._attention(q, k, v)
        x = x + self.mlp(self.norm2(x))
        return x.permute(0, 2, 1).contiguous().view(b, c, h, w)


class Transformer(nn.Module):
    def __init__(self, dim, depth=1, num_heads=1):
        super().__init__()
        self.layers = nn.ModuleList(Block(dim, num_heads) for _ in range(depth))

    def forward(self, query, key):
        for layer in self.layers:
            query = layer(query, key)
        return query


def released_control_points(low, high):
    """The released 21 control points (``dataset_util.get_bbox21_3d_from_dict``) of the box
    [low, high] (3,) each: corners b/t (z min/max), l/r (x min/max), b/f (y min/max) in the
    order blb brb blf brf tlb trb tlf trf, the edge midpoints ble bre bfe bbe tle tre tfe tbe
    lfe lbe rfe rbe, the centre. Returns (21, 3)."""
    (x0, y0, z0), (x1, y1, z1) = low, high
    corner = {
        name: torch.tensor([x, y, z], dtype=torch.float64)
        for name, (x, y, z) in {
            "blb": (x0, y0, z0), "brb": (x1, y0, z0), "blf": (x0, y1, z0), "brf": (x1, y1, z0),
            "tlb": (x0, y0, z1), "trb": (x1, y0, z1), "tlf": (x0, y1, z1), "trf": (x1, y1, z1),
        }.items()
    }  # fmt: skip
    edges = [("blb", "blf"), ("brb", "brf"), ("blf", "brf"), ("blb", "brb"),
             ("tlb", "tlf"), ("trb", "trf"), ("tlf", "trf"), ("tlb", "trb"),
             ("tlf", "blf"), ("tlb", "blb"), ("trf", "brf"), ("trb", "brb")]  # fmt: skip
    points = [corner[n] for n in ("blb", "brb", "blf", "brf", "tlb", "trb", "tlf", "trf")]
    points += [(corner[a] + corner[b]) / 2 for a, b in edges]
    points.append((corner["tlb"] + corner["brf"]) / 2)
    return torch.stack(points)


# ----------------------------------------------------------------------------- the network
class ReleasedHONet(nn.Module):
    """``models.HONet`` at inference (given boxes, evaluation outputs)."""

    def __init__(self, mano, width=64, channels=256, roi_res=32, mano_neurons=(1024, 512)):
        """``mano``: a MANO model dict, or a MANO layer module (ReleasedManoLayer's interface)."""
        super().__init__()
        self.out_res = roi_res
        self.base_net = FPN(width, channels)
        self.hand_head = HandRegHead(roi_res, 21, channels)
        self.hand_encoder = HandEncoder(21, channels)
        feature_size = channels * (roi_res // 16) ** 2
        mano_layer = ReleasedManoLayer(mano) if isinstance(mano, dict) else mano
        self.mano_branch = ManoRegHead(mano_layer, feature_size, mano_neurons)
        self.obj_head = ObjRegHead(channels, 21)
        self.transformer = Transformer(channels, depth=1, num_heads=1)

    def forward(self, images, hand_boxes, object_boxes, roots3d=None):
        """Evaluation outputs (see the module)."""
        out = self.outputs(images, hand_boxes, object_boxes)
        n = images.shape[0]
        roots3d = (images.new_zeros(n, 3) if roots3d is None else roots3d)[:, None]
        change = self.mano_branch.coord_change_mat
        x, y, conf = out["object"]
        return {
            "joints2d": out["joints2d"],
            "joints3d": (out["joints3d"] + roots3d) @ change,
            "vertices": (out["vertices"] + roots3d) @ change,
            "object_x": x,
            "object_y": y,
            "object_conf": conf,
        }

    def outputs(self, images, hand_boxes, object_boxes):
        """Training outputs: ``joints2d`` (N, 21, 2), ``rotmats``, ``mano_shape``, root-relative
        ``vertices`` / ``joints3d`` in MANO's frame, ``object`` (x, y, conf) per cell."""
        n = images.shape[0]
        top_left = torch.max(hand_boxes[:, :2], object_boxes[:, :2])
        bottom_right = torch.min(hand_boxes[:, 2:], object_boxes[:, 2:])
        inter_boxes = torch.cat([top_left, bottom_right], 1)
        inter_valid = ((bottom_right - top_left > 0).sum(1)) == 2
        p2 = self.base_net(images)[0]
        index = torch.arange(n, dtype=images.dtype).view(-1, 1)

        def pool(boxes):
            return ops.roi_align(p2, torch.cat([index, boxes], 1), (self.out_res, self.out_res),
                                 spatial_scale=0.25, sampling_ratio=-1)  # fmt: skip

        heatmaps, encoding, joints2d = self.hand_head(pool(hand_boxes))
        features = self.hand_encoder(heatmaps, encoding)
        rotmats, shape, vertices, joints3d = self.mano_branch.predict(features)
        inter = pool(inter_boxes) * inter_valid[:, None, None, None]
        obj = self.transformer(pool(object_boxes), inter)
        return {
            "joints2d": joints2d,
            "rotmats": rotmats,
            "mano_shape": shape,
            "vertices": vertices,
            "joints3d": joints3d,
            "object": pose2d_layer(self.obj_head(obj)),
        }


# ----------------------------------------------------------------------------- training
# The authors' training code (models.HOModel, networks/loss.py, dataset/ho3d.py in train mode,
# dataset/dataset_util.py), written here from their published code with their interfaces, so
# that tools/compare_with_authors.py can run against a directory laid out like their
# repository (write_fake_checkout) without downloading it.


class AuthorsManoLayer(ReleasedManoLayer):
    """``utils/manolayer_ho3d.ManoLayer(ncomps, center_idx=0, flat_hand_mean=True, side, mano_root,
    use_pca=False)``: reads ``mano_root``/MANO_RIGHT.pkl."""

    def __init__(self, center_idx=0, flat_hand_mean=True, ncomps=45, side="right",
                 mano_root="assets/mano_models", use_pca=False, **unused):  # fmt: skip
        import os

        from handobj_d2.mano import read_mano_file

        assert center_idx == 0 and flat_hand_mean and not use_pca and side == "right"
        super().__init__(read_mano_file(os.path.join(mano_root, "MANO_RIGHT.pkl")))

    def forward(self, th_pose_coeffs, th_betas=None):
        return super().forward(th_pose_coeffs, th_betas)


class AuthorsHONet(ReleasedHONet):
    """``models.HONet``'s interface; widths from ``write_fake_checkout``."""

    widths = {"width": 64, "channels": 256}

    def __init__(self, roi_res=32, mano_layer=None, mano_neurons=(1024, 512), **unused):
        super().__init__(mano_layer, roi_res=roi_res, mano_neurons=tuple(mano_neurons),
                         **self.widths)  # fmt: skip

    def net_forward(self, imgs, bbox_hand, bbox_obj, mano_params=None, roots3d=None):
        out = self.outputs(imgs, bbox_hand, bbox_obj)
        gt = None
        if mano_params is not None:
            pose, shape = mano_params[:, :48], mano_params[:, 48:]
            verts, joints = self.mano_branch.mano_layer(pose, shape)
            gt = {"verts3d": verts, "joints3d": joints, "mano_shape": shape,
                  "mano_pose": rodrigues(pose.reshape(-1, 3)).view(-1, 16, 3, 3)}  # fmt: skip
        if roots3d is not None:
            change = self.mano_branch.coord_change_mat
            pred = {"verts3d": (out["vertices"] + roots3d[:, None]) @ change,
                    "joints3d": (out["joints3d"] + roots3d[:, None]) @ change}  # fmt: skip
        else:
            pred = {"verts3d": out["vertices"], "joints3d": out["joints3d"],
                    "mano_shape": out["mano_shape"], "mano_pose": out["rotmats"]}  # fmt: skip
        obj = list(out["object"])
        if not self.training:
            obj = [t.cpu().numpy() for t in obj]
        return [out["joints2d"]], pred, gt, obj

    def forward(self, imgs, bbox_hand, bbox_obj, mano_params=None, roots3d=None):
        joints, pred, gt, obj = self.net_forward(imgs, bbox_hand, bbox_obj, mano_params, roots3d)
        return (joints, pred, gt, obj) if self.training else (joints, pred, obj)


class Joint2DLoss:
    def __init__(self, lambda_joints2d):
        self.weight = lambda_joints2d

    def compute_loss(self, preds, gts):
        losses = [self.weight * F.mse_loss(p, gts) for p in preds]
        return sum(losses) / len(losses), {"hm_joints2d_loss": losses[-1].detach()}


class ManoLoss:
    """The terms with a weight (and a target) only, each weight x MSE."""

    def __init__(self, lambda_verts3d=None, lambda_joints3d=None, lambda_manopose=None,
                 lambda_manoshape=None, lambda_regulshape=None, lambda_regulpose=None):  # fmt: skip
        self.terms = [("verts3d", "mano_mesh3d_loss", lambda_verts3d),
                      ("joints3d", "mano_joints3d_loss", lambda_joints3d),
                      ("mano_pose", "manopose_loss", lambda_manopose),
                      ("mano_shape", "manoshape_loss", lambda_manoshape)]  # fmt: skip

    def compute_loss(self, preds, gts):
        total, losses = 0, {}
        for key, name, weight in self.terms:
            if weight is not None and key in gts:
                losses[name] = weight * F.mse_loss(preds[key], gts[key])
                total = total + losses[name]
        losses = {k: v.detach() for k, v in losses.items()}
        losses["mano_total_loss"] = total.detach()
        return total, losses


class ObjectLoss:
    """Per-cell votes: L1 of x and y inside the 32 x 32 mask (means over every cell, point and
    sample); confidence: L1 to exp(-distance) inside the mask, 0 outside, a fifth of the
    weight."""

    def __init__(self, obj_reg_loss_weight):
        self.reg_weight, self.conf_weight = obj_reg_loss_weight, obj_reg_loss_weight / 5

    def compute_loss(self, obj_p2d_gt, obj_mask, obj_pred, obj_lossmask=None):
        x, y, conf = obj_pred
        mask = obj_mask[..., None].to(x.dtype)
        gx = obj_p2d_gt[:, None, None, :, 0] * mask
        gy = obj_p2d_gt[:, None, None, :, 1] * mask
        x, y = x * mask, y * mask
        target = (torch.exp(-((x - gx) ** 2 + (y - gy) ** 2).sqrt()) * mask).detach()
        reg = self.reg_weight * (F.l1_loss(x, gx) + F.l1_loss(y, gy))
        conf_loss = self.conf_weight * F.l1_loss(conf, target)
        return reg + conf_loss, {"obj_reg_loss": reg.detach(), "obj_conf_loss": conf_loss.detach()}


class AuthorsHOModel(nn.Module):
    """``models.HOModel``: training returns (total loss, dict of the terms)."""

    def __init__(self, honet, mano_lambda_verts3d=None, mano_lambda_joints3d=None,
                 mano_lambda_manopose=None, mano_lambda_manoshape=None,
                 mano_lambda_regulshape=None, mano_lambda_regulpose=None, lambda_joints2d=None,
                 lambda_objects=None):  # fmt: skip
        super().__init__()
        self.honet = honet
        self.mano_loss = ManoLoss(mano_lambda_verts3d, mano_lambda_joints3d,
                                  mano_lambda_manopose, mano_lambda_manoshape)  # fmt: skip
        self.joint2d_loss = Joint2DLoss(lambda_joints2d)
        self.object_loss = ObjectLoss(lambda_objects)

    def forward(self, imgs, bbox_hand, bbox_obj, joints_uv=None, joints_xyz=None,
                mano_params=None, roots3d=None, obj_p2d_gt=None, obj_mask=None,
                obj_lossmask=None):  # fmt: skip
        if not self.training:
            joints, pred, _, obj = self.honet.module.net_forward(imgs, bbox_hand, bbox_obj,
                                                                 roots3d=roots3d)  # fmt: skip
            return joints, pred, obj
        joints, pred, gt, obj = self.honet(imgs, bbox_hand, bbox_obj, mano_params=mano_params)
        total, losses = self.mano_loss.compute_loss(pred, gt)
        for part in (self.joint2d_loss.compute_loss(joints, joints_uv),
                     self.object_loss.compute_loss(obj_p2d_gt, obj_mask, obj)):  # fmt: skip
            total = total + part[0]
            losses.update(part[1])
        losses["total_loss"] = total.detach()
        return total, losses


# dataset/dataset_util.py
def points_box(points, factor):
    """Box of 2D points scaled ``factor`` times about its centre, the centre truncated to whole
    pixels (their ``int()``); float32 (4,)."""
    import numpy as np

    low, high = points.min(0), points.max(0)
    centre = np.array([int((high[0] + low[0]) / 2), int((high[1] + low[1]) / 2)])
    half = (high - low) * factor / 2
    return np.array([*(centre - half), *(centre + half)], dtype=np.float32)


def fuse_boxes(box_a, box_b, image_size):
    """Union of two boxes clipped to the image (width, height): whole-pixel centre, longer side."""
    import numpy as np

    corners = np.concatenate([box_a.reshape(2, 2), box_b.reshape(2, 2)])
    low = np.maximum(corners.min(0), 0)
    high = np.minimum(corners.max(0), image_size)
    centre = np.array([int((high[0] + low[0]) / 2), int((high[1] + low[1]) / 2)])
    return centre, max(high - low)


def _no_rotation_crop(centre, scale, res):
    import numpy as np

    return np.array([[res / scale, 0, res * (0.5 - centre[0] / scale)],
                     [0, res / scale, res * (0.5 - centre[1] / scale)], [0, 0, 1]])  # fmt: skip


def crop_transforms(centre, scale, res, rot, K):
    """Image -> crop (rotation about the image origin, then the crop of the rotated centre);
    the crop alone for the camera (rotation about the principal point); the rotation."""
    import numpy as np

    c, s = np.cos(rot), np.sin(rot)
    rot_mat = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    total = _no_rotation_crop((rot_mat @ [*centre, 1])[:2], scale, res) @ rot_mat
    shift = np.eye(3)
    shift[:2, 2] = -K[:2, 2]
    about_pp = np.linalg.inv(shift) @ rot_mat @ shift @ [*centre, 1]
    camera = _no_rotation_crop(about_pp[:2], scale, res)
    return total.astype(np.float32), camera.astype(np.float32), rot_mat.astype(np.float32)


def transform_points(points, affine):
    import numpy as np

    return (np.concatenate([points, np.ones((len(points), 1))], 1) @ affine.T)[:, :2]


def get_mask_ROI(mask, bbox):
    return mask.crop(tuple(float(v) for v in bbox))


class AuthorsHO3D(torch.utils.data.Dataset):
    """``dataset/ho3d.HO3D`` in train mode."""

    def __init__(self, dataset_root, obj_model_root=None, train_label_root="./ho3d-process",
                 mode="train", inp_res=512, max_rot=3.141592653589793, scale_jittering=0.2,
                 center_jittering=0.1, hue=0.15, saturation=0.5, contrast=0.5, brightness=0.5,
                 blur_radius=0.5):  # fmt: skip
        import json
        import os

        import numpy as np

        assert mode == "train", "the test reference has the training mode only"
        self.root, self.res = dataset_root, inp_res
        self.jitter = (center_jittering, scale_jittering, max_rot, blur_radius)
        self.colour = (brightness, contrast, saturation, hue)
        self.seg_root = os.path.join(train_label_root, "train_segLabel")
        with open(os.path.join(train_label_root, "train.txt")) as f:
            self.names = [line.strip() for line in f]

        def load(name):
            with open(os.path.join(train_label_root, f"train_{name}.json")) as f:
                return [np.array(v, dtype=np.float32) for v in json.load(f)]

        self.K, joints = load("K"), load("joint")
        self.mano, self.p2d = load("mano"), load("obj")
        self.joints_uv = []
        for K, xyz in zip(self.K, joints):
            uv = xyz.astype(np.float64) @ K.T.astype(np.float64)
            self.joints_uv.append(uv[:, :2] / uv[:, 2:])

    def __len__(self):
        return len(self.names)

    def __getitem__(self, idx):
        import os
        import random

        import cv2
        import numpy as np
        from PIL import Image, ImageFilter
        from torchvision.transforms import functional as TF

        seq, fid = self.names[idx].split("/")
        img = Image.open(os.path.join(self.root, "train", seq, "rgb", fid + ".png")).convert("RGB")
        gray = Image.open(os.path.join(self.seg_root, seq, fid + ".png"))
        K, uv, p2d = self.K[idx], self.joints_uv[idx], self.p2d[idx]
        mano = self.mano[idx].copy()
        centre, scale = fuse_boxes(points_box(uv, 1.5), points_box(p2d, 1.5), img.size)
        c_jit, s_jit, max_rot, blur = self.jitter
        centre = centre + c_jit * scale * np.random.uniform(low=-1, high=1, size=2)
        scale = scale * np.clip(s_jit * np.random.randn() + 1, 1 - s_jit, 1 + s_jit)
        rot = np.random.uniform(low=-max_rot, high=max_rot)
        total, camera, rot_mat = crop_transforms(centre, scale, self.res, rot, K)
        # float32 throughout, as theirs (near pi the axis-angle is ill-conditioned).
        change = np.diag([1.0, -1.0, -1.0]).astype(np.float32)
        mano[:3] = cv2.Rodrigues((rot_mat @ change) @ cv2.Rodrigues(mano[:3])[0])[0][:, 0]
        uv, p2d = transform_points(uv, total), transform_points(p2d, total)
        K = camera @ K
        bbox_hand, bbox_obj = points_box(uv, 1.1), points_box(p2d, 1.0)
        uv = (uv - bbox_hand[:2]) / (bbox_hand[2:] - bbox_hand[:2])
        p2d = (p2d - bbox_obj[:2]) / (bbox_obj[2:] - bbox_obj[:2])
        inverse = np.linalg.inv(total)[:2].reshape(-1)
        size = (self.res, self.res)
        img = img.transform(size, Image.AFFINE, tuple(inverse))
        img = img.filter(ImageFilter.GaussianBlur(random.random() * blur))
        factors = [random.uniform(max(0, 1 - s), 1 + s) if s > 0 else None
                   for s in self.colour[:3]]  # fmt: skip
        factors.append(random.uniform(-self.colour[3], self.colour[3]) if self.colour[3] > 0
                       else None)  # fmt: skip
        b, c, s, h = factors
        ops = [(TF.adjust_brightness, b), (TF.adjust_saturation, s), (TF.adjust_hue, h),
               (TF.adjust_contrast, c)]  # fmt: skip
        ops = [(op, v) for op, v in ops if v is not None]
        random.shuffle(ops)
        for op, v in ops:
            img = op(img, v)
        gray = get_mask_ROI(gray.transform(size, Image.AFFINE, tuple(inverse)), bbox_obj)
        obj_mask = torch.from_numpy((np.asarray(gray.resize((32, 32), Image.NEAREST)) != 0)
                                    .astype(int))  # fmt: skip
        return {"img": TF.to_tensor(img), "bbox_hand": bbox_hand, "bbox_obj": bbox_obj,
                "mano_param": mano, "cam_intr": K, "joints2d": uv, "obj_p2d": p2d,
                "obj_mask": obj_mask}  # fmt: skip


FAKE_MODULES = {
    "models.py": "from released_reference import AuthorsHONet as HONet\n"
                 "from released_reference import AuthorsHOModel as HOModel\n"
                 "HONet.widths = {widths!r}\n",
    "networks/loss.py": "from released_reference import Joint2DLoss, ManoLoss, ObjectLoss\n",
    "dataset/ho3d.py": "from released_reference import AuthorsHO3D as HO3D\n",
    "dataset/dataset_util.py": "from released_reference import get_mask_ROI, points_box\n",
    "utils/manolayer_ho3d.py": "from released_reference import AuthorsManoLayer as ManoLayer\n",
}  # fmt: skip


def write_fake_checkout(folder, width=64, channels=256):
    """A directory laid out like the authors' repository whose modules are this file's
    classes (``width`` / ``channels``: the ResNet base width and FPN / head width)."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    header = f"import sys\nsys.path.insert(0, {here!r})\n"
    for path, text in FAKE_MODULES.items():
        os.makedirs(os.path.join(folder, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(folder, path), "w") as f:
            f.write(header + text.format(widths={"width": width, "channels": channels}))
    return folder
