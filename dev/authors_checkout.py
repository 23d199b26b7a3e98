"""Import the authors' code (a checkout of github.com/stevenlsw/Semi-Hand-Object, never copied
here: it has no licence) and build their model, optimiser and dataset as ``traineval.py`` does.

Their ``utils/manolayer_ho3d.py`` imports MANO's ``mano.webuser`` package (chumpy, Python 2
era) and ``manopth``, and ``dataset/ho3d_util.py`` imports ``trimesh``; none is installable
here. :func:`import_authors` puts stand-ins into ``sys.modules`` at import time, only for the
modules that cannot be imported, each written here from the behaviour the authors' code uses:

* ``mano.webuser.smpl_handpca_wrapper_HAND_only.ready_arguments(path)``: the MANO pickle's
  arrays (read without chumpy by :func:`handobj_d2.mano.read_mano_file`), each with the ``.r``
  / ``.toarray()`` accessors their layer calls, plus ``betas`` (10 zeros) as MANO adds;
* ``manopth.tensutils``: ``th_posemap_axisang`` (per joint the axis-angle's rotation matrix
  through a unit quaternion of angle ``|v + 1e-8|``, and that matrix minus the identity),
  ``th_with_zeros`` (append the homogeneous row), ``th_pack``, ``subtract_flat_id``,
  ``make_list``; ``manopth.rodrigues_layer``, ``rotproj``, ``rot6d`` for their names only
  (the released layer runs in axis-angle mode and never calls them);
* ``trimesh.load(path).vertices``: the x, y, z columns of an ``.xyz`` point file.

And one patch after import: their ``dataset_util.get_mask_ROI`` passes a numpy box to
``PIL.Image.crop``, which Pillow >= 10 refuses; it gets the box as a tuple (Pillow rounds it
as before).

So the MANO part of the comparison runs their layer on our loading and these few lines; the
network, losses, dataset and optimiser are theirs unchanged.
"""

import importlib
import os
import sys
import types

import numpy as np
import torch

MODULES = ("models", "networks.loss", "dataset.ho3d", "dataset.dataset_util",
           "utils.manolayer_ho3d")  # fmt: skip
COORD_CHANGE = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))
# utils/options.py defaults (the released run's values).
OPTIONS = {
    "mano_lambda_verts3d": 1e4, "mano_lambda_joints3d": 1e4, "mano_lambda_manopose": 10.0,
    "mano_lambda_manoshape": 0.1, "mano_lambda_regulshape": 1e2, "mano_lambda_regulpose": 1.0,
    "lambda_joints2d": 1e2, "lambda_objects": 5e2, "lr": 1e-4, "weight_decay": 5e-4,
    "lr_decay_step": 10, "lr_decay_gamma": 0.7,
}  # fmt: skip


class _ChumpyLike(np.ndarray):
    """numpy array with chumpy's ``.r`` and scipy's ``.toarray()``."""

    @property
    def r(self):
        return np.asarray(self)

    def toarray(self):
        return np.asarray(self)


def _ready_arguments(path):
    from handobj_d2.mano import read_mano_file

    model = read_mano_file(path)
    out = {k: v if isinstance(v, str) else np.asarray(v).view(_ChumpyLike) for k, v in model.items()}
    out.setdefault("betas", np.zeros(10).view(_ChumpyLike))
    return out


def _quaternion_rotmats(axis_angle):
    """(B, 3) -> (B, 3, 3), angle |v + 1e-8| (manopth's batch_rodrigues convention)."""
    angle = (axis_angle + 1e-8).norm(dim=1, keepdim=True)
    axis = axis_angle / angle
    w, (x, y, z) = (angle / 2).cos()[:, 0], ((angle / 2).sin() * axis).unbind(1)
    norm = (w * w + x * x + y * y + z * z).sqrt()
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    rows = [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (w * y + x * z),
            2 * (w * z + x * y), w * w - x * x + y * y - z * z, 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (w * x + y * z), w * w - x * x - y * y + z * z]  # fmt: skip
    return torch.stack(rows, 1).view(-1, 3, 3)


def _posemap_axisang(pose):
    rot = _quaternion_rotmats(pose.reshape(-1, 3)).reshape(pose.shape[0], -1)
    return _subtract_flat_id(rot), rot


def _subtract_flat_id(rot):
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).reshape(-1)
    return rot - eye.repeat(rot.shape[1] // 9)


def _with_zeros(tensor):
    bottom = tensor.new_tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 4).expand(tensor.shape[0], 1, 4)
    return torch.cat([tensor, bottom], 1)


def _pack(tensor):
    return torch.cat([tensor.new_zeros(tensor.shape[0], 4, 3), tensor], 2)


def _load_xyz(path):
    return types.SimpleNamespace(vertices=np.loadtxt(path, ndmin=2)[:, :3])


def _stand_ins():
    tensutils = types.ModuleType("manopth.tensutils")
    tensutils.th_posemap_axisang = _posemap_axisang
    tensutils.th_with_zeros = _with_zeros
    tensutils.th_pack = _pack
    tensutils.subtract_flat_id = _subtract_flat_id
    tensutils.make_list = lambda x: x if isinstance(x, (list, tuple)) else [x]
    manopth = types.ModuleType("manopth")
    manopth.__path__ = []
    modules = {"manopth": manopth, "manopth.tensutils": tensutils}
    for name in ("rodrigues_layer", "rotproj", "rot6d"):
        modules[f"manopth.{name}"] = types.ModuleType(f"manopth.{name}")
        setattr(manopth, name, modules[f"manopth.{name}"])
    modules["manopth.rodrigues_layer"].batch_rodrigues = _quaternion_rotmats
    manopth.tensutils = tensutils
    wrapper = types.ModuleType("mano.webuser.smpl_handpca_wrapper_HAND_only")
    wrapper.ready_arguments = _ready_arguments
    for name in ("mano", "mano.webuser"):
        modules[name] = types.ModuleType(name)
        modules[name].__path__ = []
    modules["mano.webuser.smpl_handpca_wrapper_HAND_only"] = wrapper
    trimesh = types.ModuleType("trimesh")
    trimesh.load = _load_xyz
    modules["trimesh"] = trimesh
    return modules


def import_authors(authors_code):
    """Import their modules from ``authors_code`` (a checkout's root); returns a namespace with
    ``models``, ``loss``, ``ho3d``, ``dataset_util``, ``manolayer`` and the list of stand-ins
    used (see the module)."""
    root = os.path.abspath(authors_code)
    missing = [p for p in ("models.py", "networks/loss.py", "dataset/ho3d.py",
                           "utils/manolayer_ho3d.py") if not os.path.isfile(os.path.join(root, p))]  # fmt: skip
    if missing:
        raise FileNotFoundError(
            f"{root}: not a checkout of github.com/stevenlsw/Semi-Hand-Object (missing "
            f"{', '.join(missing)})"
        )
    used = []
    for name, module in _stand_ins().items():
        top = name.split(".")[0]
        try:
            importlib.import_module(name)
        except ImportError:
            if top not in used:
                used.append(top)
    for name, module in _stand_ins().items():
        if name.split(".")[0] in used:
            sys.modules[name] = module
    if root not in sys.path:
        sys.path.insert(0, root)
    for name in MODULES + ("networks", "dataset", "utils"):
        sys.modules.pop(name, None)
    mods = [importlib.import_module(m) for m in MODULES]
    mods[3].get_mask_ROI = lambda mask, bbox: mask.crop(tuple(float(v) for v in bbox))
    return types.SimpleNamespace(
        models=mods[0], loss=mods[1], ho3d=mods[2], dataset_util=mods[3], manolayer=mods[4],
        stand_ins=used,
    )  # fmt: skip


def mano_folder(mano_root, workdir):
    """A folder holding MANO_RIGHT.pkl (their layer's ``mano_root``): ``mano_root`` itself, or
    a folder in ``workdir`` linking to ``mano_root`` when it is the pickle file."""
    if os.path.isdir(mano_root):
        if not os.path.isfile(os.path.join(mano_root, "MANO_RIGHT.pkl")):
            raise FileNotFoundError(f"{mano_root}: no MANO_RIGHT.pkl in this folder")
        return mano_root
    if not os.path.isfile(mano_root):
        raise FileNotFoundError(f"{mano_root}: no such MANO file or folder")
    folder = os.path.join(workdir, "mano")
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, "MANO_RIGHT.pkl")
    if not os.path.exists(link):
        os.symlink(os.path.abspath(mano_root), link)
    return folder


def build_authors_model(authors, mano_dir):
    """``utils.utils.get_network`` with ``--resume`` given (no ImageNet download): HONet in a
    DataParallel inside HOModel, the released options. The DataParallel runs the module
    directly without CUDA."""
    layer = authors.manolayer.ManoLayer(ncomps=45, center_idx=0, flat_hand_mean=True,
                                        side="right", mano_root=mano_dir, use_pca=False)  # fmt: skip
    net = authors.models.HONet(
        stacks=1, channels=256, blocks=1, mano_layer=layer, mano_neurons=[1024, 512],
        transformer_depth=1, transformer_head=1, coord_change_mat=torch.tensor(COORD_CHANGE),
        reg_object=True, pretrained=False,
    )  # fmt: skip
    lam = OPTIONS
    return authors.models.HOModel(
        torch.nn.DataParallel(net),
        mano_lambda_verts3d=lam["mano_lambda_verts3d"],
        mano_lambda_joints3d=lam["mano_lambda_joints3d"],
        mano_lambda_manopose=lam["mano_lambda_manopose"],
        mano_lambda_manoshape=lam["mano_lambda_manoshape"],
        mano_lambda_regulshape=lam["mano_lambda_regulshape"],
        mano_lambda_regulpose=lam["mano_lambda_regulpose"],
        lambda_joints2d=lam["lambda_joints2d"],
        lambda_objects=lam["lambda_objects"],
    )


def authors_optimizer(parameters):
    """traineval.py: Adam over the trainable ``parameters`` (the model's), StepLR stepped once
    per epoch."""
    params = filter(lambda p: p.requires_grad, parameters)
    optimizer = torch.optim.Adam(params, lr=OPTIONS["lr"], weight_decay=OPTIONS["weight_decay"])
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, OPTIONS["lr_decay_step"], gamma=OPTIONS["lr_decay_gamma"]
    )
    return optimizer, scheduler


def randomise(module, seed):
    """Seeded random values where the constructors leave constants (norms' affine parameters
    and statistics, biases, heatmap temperatures); heatmap and vote output layers scaled up so
    that heatmaps are peaked and vote confidences spread, as in a trained network."""
    generator = torch.Generator().manual_seed(seed)
    nn = torch.nn

    def uniform(t, low, high):
        t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * (high - low) + low)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * std)

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                uniform(m.weight, 0.5, 1.5)
                normal(m.bias, 0.1)
            if isinstance(m, nn.BatchNorm2d):
                normal(m.running_mean, 0.1)
                uniform(m.running_var, 0.5, 1.5)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                normal(m.bias, 0.1)
        net = module.honet.module
        uniform(net.hand_head.betas, 0.5, 2.0)
        net.hand_head.score[0].weight.mul_(15)
        net.obj_head.out_conv.weight.mul_(15)
