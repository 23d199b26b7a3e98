"""Our released-recipe model against the authors' code (tools/compare_with_authors.py).

Their model (HOModel(DataParallel(HONet)), dev/authors_checkout.py) gets seeded random weights,
is saved in their checkpoint layout and converted by tools/convert_released_checkpoint.py into
ours (configs/HO3D-v2/handobj_R50_FPN_released.yaml). Then, each side through its own code:

a. inference on the same images and boxes;
b. every loss term and the total on the same training batch, and every parameter's gradient
   (theirs mapped to our names by the converter itself: gradients are converted as weights);
c. the weights (and BatchNorm statistics) after 3 steps of each side's optimiser set-up, our
   optimiser stepping on their gradients (converted): Adam's first step moves an element by
   lr x g / (|g| + 1e-8), about +-lr for any |g| above 1e-8, so where a gradient is nearly
   zero its rounding decides the direction and two float64 codes whose gradients agree to
   1e-8 still end 1e-3 apart after one step (reported beside: the steps on each side's own
   gradients, and one Adam step's change from 1e-9 relative gradient noise);
d. the training targets of one HO3D-format frame through their ``dataset/ho3d.HO3D`` in train
   mode and our HandObjectDatasetMapper, with the same random draws: ours from the released
   augmentation's ``sample`` (seeded, non-zero centre offset, scale, rotation, blur, colour
   factors and order), given to our mapper as ``params`` and to their ``data_aug`` by patching
   its ``np.random`` / ``random`` calls (dev/authors_draws.py);
e. one training step (forward, backward, optimiser step) at 512 x 512, batch 2, alternating.

Relative differences are max |ours - theirs| / max |theirs| per tensor (per loss), the maximum
over tensors.
"""

import os
import time

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler

from dev import authors_checkout
from dev.authors_draws import fixed_draws
from dev.authors_files import write_authors_training_files
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper, hand_object_instances
from handobj_d2.engine import HandObjectTrainer, setup_cfg
from handobj_d2.utils.io import read_image
from handobj_d2.modeling.released_checkpoint import (
    RELEASED_CONTROL_POINT_ORDER,
    convert_released_state_dict,
)

CONFIG = "configs/HO3D-v2/handobj_R50_FPN_released.yaml"
PREFIX = "honet.module."
OPENGL_TO_OPENCV = torch.tensor([1.0, -1.0, -1.0])
# Their loss names -> ours.
LOSS_NAMES = {
    "hm_joints2d_loss": "loss_joints2d",
    "mano_mesh3d_loss": "loss_vertices3d",
    "mano_joints3d_loss": "loss_joints3d",
    "manopose_loss": "loss_mano_pose",
    "manoshape_loss": "loss_mano_shape",
    "obj_reg_loss": "loss_object_coords",
    "obj_conf_loss": "loss_object_confidence",
    "total_loss": "total",
}
# Their 10 HO3D objects (dataset/ho3d_util.load_objects_HO3D loads all of them).
HO3D_OBJECTS = ("011_banana", "021_bleach_cleanser", "003_cracker_box", "035_power_drill",
                "025_mug", "006_mustard_bottle", "019_pitcher_base", "010_potted_meat_can",
                "037_scissors", "004_sugar_box")  # fmt: skip


def rel(a, b):
    """max |a - b| / max |b| (b: theirs)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


class Sides:
    """Both models, ours loaded from their converted checkpoint."""

    def __init__(self, authors, mano_dir, workdir, seed=0, opts=()):
        self.authors = authors
        torch.manual_seed(seed)
        self.theirs = authors_checkout.build_authors_model(authors, mano_dir)
        authors_checkout.randomise(self.theirs, seed + 1)
        src = os.path.join(workdir, "authors_random.pth.tar")
        dst = os.path.join(workdir, "converted.pth")
        torch.save({"epoch": 0, "network": "honet_transformer",
                    "state_dict": self.theirs.state_dict()}, src)  # fmt: skip
        from tools import convert_released_checkpoint

        mano_file = os.path.join(mano_dir, "MANO_RIGHT.pkl")
        self.opts = ["MODEL.DEVICE", "cpu", "MODEL.MANO.MODEL_PATH", mano_file, *opts]
        argv = [src, dst, "--config-file", CONFIG, *self.opts]
        if convert_released_checkpoint.main(argv) != 0:
            raise RuntimeError("tools/convert_released_checkpoint.py failed")
        self.weights = dst
        self.cfg = setup_cfg(CONFIG, self.opts + ["MODEL.WEIGHTS", dst])
        self.ours = build_model(self.cfg)
        DetectionCheckpointer(self.ours).load(dst)
        self.initial = {
            "theirs": {k: v.clone() for k, v in self.theirs.state_dict().items()},
            "ours": {k: v.clone() for k, v in self.ours.state_dict().items()},
        }

    def reset(self, dtype):
        for side in ("theirs", "ours"):
            model = getattr(self, side)
            model.load_state_dict(self.initial[side])
            model.to(dtype)

    def to_ours(self, released):
        """Their state dict (keys with or without PREFIX) -> ours, through the converter."""
        released = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in released.items()}
        converted, _ = convert_released_state_dict(released, self.ours.state_dict())
        return converted

    def their_grads(self):
        """Their gradients (zeros where None) converted to our names."""
        state = {k[len(PREFIX):]: v.detach().clone() for k, v in self.theirs.state_dict().items()
                 if k.startswith(PREFIX)}  # fmt: skip
        for name, p in self.theirs.named_parameters():
            key = name[len(PREFIX):]
            state[key] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        return self.to_ours(state)


# ----------------------------------------------------------------------------- batch
def training_batch(size, dtype, seed=3):
    """The same two training samples in both codes' forms: (their tensors dict, our inputs)."""
    rng = np.random.default_rng(seed)
    boxes = [([0.2, 0.15, 0.65, 0.7], [0.375, 0.25, 0.875, 0.75]),
             ([0.05, 0.5, 0.4, 0.95], [0.5, 0.125, 0.75, 0.375])]  # fmt: skip
    if size % 128:
        raise ValueError(f"input side {size} px: must be a multiple of 128")
    # Hand boxes on 1/16 px: Detectron2's Boxes hold float32, so both sides then pool the same
    # boxes (a float64 box that float32 cannot hold would differ by ~1e-7 relative).
    hand = (torch.tensor([h for h, _ in boxes], dtype=dtype) * size * 16).round() / 16
    # Object boxes on whole multiples of 32 px (sides multiple of 128): each of the 32 x 32 mask cells is a block of
    # pixels, which ROIAlign (ours) and their direct 32 x 32 mask read alike.
    obj = torch.tensor([o for _, o in boxes], dtype=dtype) * size
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, size, size))).to(dtype)
    joints_uv = torch.from_numpy(rng.uniform(0.05, 0.95, (2, 21, 2))).to(dtype)
    obj_p2d = torch.from_numpy(rng.uniform(-0.1, 1.1, (2, 21, 2))).to(dtype)
    mask32 = torch.from_numpy(rng.random((2, 32, 32)) < 0.6).to(dtype)
    pose = rng.normal(0, 0.3, (2, 48))
    pose[:, :3] = rng.normal(0, 1.5, (2, 3))
    # MANO labels on float32 values: our pairs hold them in float32 (as their dataset does).
    mano = torch.from_numpy(np.concatenate([pose, rng.normal(0, 1, (2, 10))], 1)).float().to(dtype)
    theirs = {"imgs": images / 255, "bbox_hand": hand, "bbox_obj": obj, "joints_uv": joints_uv,
              "mano_params": mano, "obj_p2d_gt": obj_p2d, "obj_mask": mask32}  # fmt: skip
    ours = []
    for i in range(2):
        h_size, o_size = hand[i, 2:] - hand[i, :2], obj[i, 2:] - obj[i, :2]
        full_mask = torch.zeros(size, size, dtype=torch.bool)
        block = int(o_size[0]) // 32, int(o_size[1]) // 32
        cells = mask32[i].bool().repeat_interleave(block[1], 0).repeat_interleave(block[0], 1)
        x0, y0 = int(obj[i, 0]), int(obj[i, 1])
        full_mask[y0 : y0 + cells.shape[0], x0 : x0 + cells.shape[1]] = cells
        instances = hand_object_instances(
            (size, size),
            hand={"box": hand[i].numpy(), "joints2d": (joints_uv[i] * h_size + hand[i, :2]).numpy(),
                  "mano_pose": mano[i, :48].numpy(), "mano_shape": mano[i, 48:].numpy(),
                  "has_mano": True},
            obj={"box": obj[i].numpy(),
                 "control_points2d": (obj_p2d[i][list(RELEASED_CONTROL_POINT_ORDER)] * o_size
                                      + obj[i, :2]).numpy(),
                 "object_R": np.eye(3), "object_t": np.zeros(3), "has_pose": True},
            object_mask=full_mask.numpy(),
        )  # fmt: skip
        for name in instances.get_fields():
            value = instances.get(name)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                instances.set(name, value.to(dtype))
        instances.gt_joints2d = (joints_uv[i] * h_size + hand[i, :2])[None].to(dtype)
        instances.gt_control_points2d = (
            obj_p2d[i][list(RELEASED_CONTROL_POINT_ORDER)] * o_size + obj[i, :2]
        )[None].to(dtype)
        instances.gt_hand_boxes.tensor = hand[i : i + 1].clone()
        instances.gt_object_boxes.tensor = obj[i : i + 1].clone()
        ours.append({"image": images[i], "height": size, "width": size, "hand_object": instances})
    return theirs, ours


def _their_loss(sides, b):
    return sides.theirs(b["imgs"], b["bbox_hand"], b["bbox_obj"], joints_uv=b["joints_uv"],
                        mano_params=b["mano_params"], obj_p2d_gt=b["obj_p2d_gt"],
                        obj_mask=b["obj_mask"])  # fmt: skip


def _our_loss(sides, inputs):
    losses = sides.ours(inputs)
    return sum(losses.values()), losses


# ----------------------------------------------------------------------------- a
def compare_inference(sides, dtype, size=256):
    sides.reset(dtype)
    sides.theirs.eval(), sides.ours.eval()
    theirs_batch, ours_batch = training_batch(size, dtype, seed=5)
    hand, obj = theirs_batch["bbox_hand"], theirs_batch["bbox_obj"]
    captured = {}
    hook = sides.ours.roi_heads.object_head.register_forward_hook(
        lambda module, args, out: captured.update(out)
    )
    inputs = [{"image": x["image"], "height": size, "width": size,
               "hand_box": hand[i], "object_box": obj[i]} for i, x in enumerate(ours_batch)]  # fmt: skip
    with torch.no_grad():
        ours = sides.ours.inference(inputs, do_postprocess=False)  # list[Instances], input px
        joints2d, mano, objs = sides.theirs(theirs_batch["imgs"], hand, obj,
                                            roots3d=hand.new_zeros(2, 3))  # fmt: skip
    hook.remove()
    flip = OPENGL_TO_OPENCV.to(dtype)
    h_size, o_size = hand[:, 2:] - hand[:, :2], obj[:, 2:] - obj[:, :2]
    joints2d = joints2d[-1]  # per stack; the last one is the output
    their_px = joints2d * h_size[:, None] + hand[:, None, :2]
    px, py = (torch.as_tensor(v, dtype=dtype) for v in objs[:2])  # (N, R, R, P) box units
    order = list(RELEASED_CONTROL_POINT_ORDER)
    their_votes = torch.stack([px, py], -1)[..., order, :].permute(0, 3, 1, 2, 4)
    their_votes = their_votes * o_size[:, None, None, None] + obj[:, None, None, None, :2]
    our_votes = captured["coords"] * o_size[:, None, None, None] + obj[:, None, None, None, :2]
    cat = torch.cat
    return {
        "joints2d_px": float((cat([o.pred_joints2d for o in ours]) - their_px).abs().max()),
        "joints3d_mm": 1000 * float((cat([o.pred_joints3d for o in ours])
                                     - mano["joints3d"] * flip).abs().max()),
        "vertices_mm": 1000 * float((cat([o.pred_vertices for o in ours])
                                     - mano["verts3d"] * flip).abs().max()),
        "object_votes_px": float((our_votes - their_votes).abs().max()),
    }  # fmt: skip


# ----------------------------------------------------------------------------- b, c
def _norms_eval(model):
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def compare_losses_and_grads(sides, dtype, size=256, norms_eval=False):
    """``norms_eval``: both sides' BatchNorms use their running statistics (as our FrozenBN
    does), which isolates the losses and heads from the norm recipe."""
    sides.reset(dtype)
    sides.theirs.train(), sides.ours.train()
    if norms_eval:
        _norms_eval(sides.theirs), _norms_eval(sides.ours)
    theirs_batch, ours_batch = training_batch(size, dtype)
    sides.theirs.zero_grad(), sides.ours.zero_grad()
    their_total, their_losses = _their_loss(sides, theirs_batch)
    their_total.backward()
    our_total, our_losses = _our_loss(sides, ours_batch)
    our_total.backward()
    our_losses = {k: float(v.detach()) for k, v in our_losses.items()}
    our_losses["total"] = float(our_total.detach())
    losses = {}
    for theirs_name, ours_name in LOSS_NAMES.items():
        losses[theirs_name] = {"ours_name": ours_name,
                               "authors": float(their_losses[theirs_name]),
                               "ours": our_losses.get(ours_name)}  # fmt: skip
    extra = {k: v for k, v in our_losses.items() if k not in LOSS_NAMES.values()}
    rel_losses = [abs(v["ours"] - v["authors"]) / max(abs(v["authors"]), 1e-30)
                  for v in losses.values() if v["ours"] is not None]  # fmt: skip
    their_grads = sides.their_grads()
    # Gradients that are zero but for rounding (the bias of a layer followed by a softmax over
    # the cells it is added to: heatmap scores, attention keys) are measured against 1e-6 of
    # the largest gradient rather than against their own size.
    floor = 1e-6 * max(float(g.abs().max()) for g in their_grads.values() if g.is_floating_point())
    grad_diffs = {}
    for name, p in sides.ours.named_parameters():
        if name not in their_grads or not p.requires_grad:
            continue
        ours = p.grad if p.grad is not None else torch.zeros_like(p)
        theirs = their_grads[name].to(ours.dtype)
        grad_diffs[name] = float((ours - theirs).abs().max()) / max(
            float(theirs.abs().max()), floor
        )
    worst = sorted(grad_diffs.items(), key=lambda kv: -kv[1])[:5]
    frozen = [n for n, p in sides.ours.named_parameters() if not p.requires_grad
              and n in their_grads]  # fmt: skip
    return {
        "losses": losses,
        "our_other_losses": extra,
        "max_rel_loss_diff": max(rel_losses),
        "max_rel_grad_diff": max(grad_diffs.values()),
        "worst_grads": dict(worst),
        "our_frozen_parameters": len(frozen),
    }


def _our_optimizer(sides):
    optimizer = HandObjectTrainer.build_optimizer(sides.cfg, sides.ours)
    return optimizer, build_lr_scheduler(sides.cfg, optimizer)


def _use_their_grads(sides, their_grads):
    """Our parameters' gradients replaced by theirs (converted to our names); a parameter
    neither side has a gradient for keeps none (Adam then skips it on both sides)."""
    for name, p in sides.ours.named_parameters():
        if name not in their_grads:
            continue
        grad = their_grads[name].to(p.dtype)
        p.grad = None if p.grad is None and not grad.any() else grad.clone()


def adam_noise_sensitivity(sides, dtype, size=256, noise=1e-9):
    """max relative weight change between one step of their Adam set-up on their gradients
    and one on the same gradients plus ``noise`` x max |g| Gaussian noise per tensor: Adam's
    first step is lr x g / (|g| + eps), so elements whose gradient is rounding-small move by
    +-lr either way."""
    sides.reset(dtype)
    sides.theirs.train()
    theirs_batch, _ = training_batch(size, dtype)
    sides.theirs.zero_grad()
    _their_loss(sides, theirs_batch)[0].backward()
    params = [p for p in sides.theirs.parameters() if p.requires_grad and p.grad is not None]
    generator = torch.Generator().manual_seed(0)
    stepped = []
    for scale in (0.0, noise):
        copies = [p.detach().clone().requires_grad_() for p in params]
        for copy, p in zip(copies, params):
            jitter = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            copy.grad = p.grad + scale * p.grad.abs().max() * jitter
        optimizer, _ = authors_checkout.authors_optimizer(copies)
        optimizer.step()
        stepped.append(copies)
    return max(rel(a, b) for a, b in zip(*stepped))


def compare_steps(sides, dtype, size=256, steps=3, same_gradients=True):
    """Weights and norm statistics after ``steps`` steps of each side's optimiser set-up.
    ``same_gradients``: our optimiser steps on their gradients (converted), which compares the
    optimiser set-ups (lr, weight decay per parameter, Adam's constants, schedule) free of
    Adam's amplification of gradient rounding (:func:`adam_noise_sensitivity`); otherwise
    each side steps on its own gradients. Both sides run their own forward passes either way
    (norm statistics)."""
    sides.reset(dtype)
    sides.theirs.train(), sides.ours.train()
    theirs_batch, ours_batch = training_batch(size, dtype)
    their_opt, _ = authors_checkout.authors_optimizer(sides.theirs.parameters())
    our_opt, our_sched = _our_optimizer(sides)
    for _ in range(steps):
        total, _ = _their_loss(sides, theirs_batch)
        their_opt.zero_grad()
        total.backward()
        their_grads = sides.their_grads() if same_gradients else None
        their_opt.step()  # their StepLR steps once per epoch
        total, _ = _our_loss(sides, ours_batch)
        our_opt.zero_grad()
        total.backward()
        if same_gradients:
            _use_their_grads(sides, their_grads)
        our_opt.step()
        our_sched.step()
    theirs = sides.to_ours(sides.theirs.state_dict())
    start = sides.to_ours(sides.initial["theirs"])
    ours = sides.ours.state_dict()
    params = dict(sides.ours.named_parameters())
    weights, updates, buffers = {}, {}, {}
    for name, value in theirs.items():
        if name not in ours or not value.is_floating_point():
            continue
        if name in params:
            weights[name] = rel(ours[name], value)
            their_update = value - start[name].to(value.dtype)
            if their_update.abs().max() > 0:
                updates[name] = rel(ours[name] - start[name].to(value.dtype), their_update)
        else:
            buffers[name] = rel(ours[name], value)
    names = {id(p): n for n, p in sides.ours.named_parameters()}
    other_decay = sorted(names[id(p)] for g in our_opt.param_groups for p in g["params"]
                         if g["weight_decay"] != authors_checkout.OPTIONS["weight_decay"])  # fmt: skip
    trained = {names[id(p)] for g in our_opt.param_groups for p in g["params"]}
    not_trained = sorted(k for k in theirs if k not in trained and not _statistic(k))
    return {
        "our_parameters_with_other_weight_decay": {"count": len(other_decay),
                                                   "first": other_decay[:3]},
        "their_parameters_we_do_not_train": {"count": len(not_trained),
                                             "first": not_trained[:3]},
        "max_rel_weight_diff_after_steps": max(weights.values()),
        "max_rel_update_diff_after_steps": max(updates.values()),
        "max_rel_norm_statistics_diff_after_steps": max(buffers.values()) if buffers else 0.0,
        "worst_updates": dict(sorted(updates.items(), key=lambda kv: -kv[1])[:5]),
        "lr": {"authors": their_opt.param_groups[0]["lr"],
               "ours": [g["lr"] for g in our_opt.param_groups][:1]},  # fmt: skip
    }


def _statistic(our_name):
    """BatchNorm statistics: buffers on both sides, never trained."""
    return our_name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


# ----------------------------------------------------------------------------- d
def _object_models(root, workdir):
    """Their loader wants all ten HO3D objects: the tree's own models, and for those it lacks
    a stand-in (any of its point files; used only by their evaluation)."""
    folder = os.path.join(workdir, "object_models")
    present = sorted(os.listdir(os.path.join(root, "models")))
    for name in HO3D_OBJECTS + tuple(present):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        source = os.path.join(root, "models", name if name in present else present[0], "points.xyz")
        link = os.path.join(folder, name, "points.xyz")
        if not os.path.exists(link):
            os.symlink(os.path.abspath(source), link)
    return folder


def _mask_cells(sides, mask, box, size=32):
    """Our object mask pooled to the object box grid, as our object loss does
    (MODEL.HANDOBJ.OBJECT.MASK_POOLING)."""
    from detectron2.structures import BitMasks, Boxes, Instances

    pair = Instances(mask.shape[-2:], gt_object_masks=BitMasks(mask),
                     gt_object_boxes=Boxes(box[None].float()))  # fmt: skip
    return sides.ours.roi_heads.object_head.mask_cells(pair, size)[0]


def compare_targets(sides, workdir, image_size=(320, 240), input_size=512, seed=10):
    """Targets of frame 0 of a one-frame synthetic HO3D tree through both data pipelines, with
    the same random draws: our augmentation's ``sample`` (seeded) given to our mapper and, by
    dev/authors_draws.py, to their ``data_aug``."""
    from handobj_d2.data.datasets.ho3d import load_ho3d
    from handobj_d2.data.synthetic.generate import generate_dataset

    root = os.path.join(workdir, "ho3d")
    if not os.path.isfile(os.path.join(root, "train.txt")):
        generate_dataset(root, train=1, evaluation=1, videos=0, image_size=image_size,
                         progress=False)  # fmt: skip
    process = os.path.join(workdir, "ho3d-process")
    names = write_authors_training_files(root, process)
    cfg = setup_cfg(CONFIG, sides.opts + ["MODEL.WEIGHTS", sides.weights,
                                          "INPUT.HANDOBJ.CROP_SIZE", str(input_size)])  # fmt: skip
    h = cfg.INPUT.HANDOBJ
    brightness, contrast, saturation, hue = h.COLOR_JITTER
    strengths = (h.CENTER_JITTER, h.SCALE_JITTER, h.ROTATION, h.BLUR_MAX_SIGMA)
    dataset = sides.authors.ho3d.HO3D(
        dataset_root=root, obj_model_root=_object_models(root, workdir),
        train_label_root=process, mode="train", inp_res=input_size, max_rot=h.ROTATION,
        scale_jittering=h.SCALE_JITTER, center_jittering=h.CENTER_JITTER, hue=hue,
        saturation=saturation, contrast=contrast, brightness=brightness,
        blur_radius=h.BLUR_MAX_SIGMA,
    )  # fmt: skip
    mapper = HandObjectDatasetMapper(cfg, True)
    params = mapper.augmentation.sample(np.random.default_rng(seed))
    with fixed_draws(params, strengths):
        theirs = dataset[0]
    records = {os.path.relpath(r["file_name"], os.path.join(root, "train")): r
               for r in load_ho3d(root, "train")}  # fmt: skip
    seq, fid = names[0].split("/")
    record = next(r for k, r in records.items() if k.startswith(os.path.join(seq, "rgb", fid)))
    ours = mapper.map(record, read_image(record["file_name"]), mapper.load_object_mask(record),
                      params=params)  # fmt: skip
    pair = ours["hand_object"]
    hand_box, obj_box = pair.gt_hand_boxes.tensor[0].double(), pair.gt_object_boxes.tensor[0].double()
    their_hand, their_obj = (torch.as_tensor(theirs[k], dtype=torch.float64)
                             for k in ("bbox_hand", "bbox_obj"))  # fmt: skip
    their_joints = torch.as_tensor(theirs["joints2d"], dtype=torch.float64)
    their_joints = their_joints * (their_hand[2:] - their_hand[:2]) + their_hand[:2]
    their_p2d = torch.as_tensor(theirs["obj_p2d"], dtype=torch.float64)
    their_p2d = (their_p2d * (their_obj[2:] - their_obj[:2]) + their_obj[:2])
    their_p2d = their_p2d[list(RELEASED_CONTROL_POINT_ORDER)]
    our_image = ours["image"].double()
    if cfg.INPUT.FORMAT == "BGR":
        our_image = our_image.flip(0)
    their_image = theirs["img"].double() * 255
    our_grey, their_grey = our_image.mean(0), their_image.mean(0)
    our_cells = _mask_cells(sides, pair.gt_object_masks.tensor, pair.gt_object_boxes.tensor[0])
    their_cells = torch.as_tensor(theirs["obj_mask"]).bool()

    their_rot = torch.as_tensor(theirs["mano_param"][:3], dtype=torch.float64)
    our_rot = pair.gt_mano_pose[0, :3].double()
    # Back in the original image: separates the boxes' definitions from the crops'. Their
    # image -> input map is the crop of cam_intr K^-1 after their rotation about the principal
    # point (the same affine map as their rotation about the origin and crop of the rotated
    # centre: same linear part, same image of the centre); ours image_to_input.
    K = torch.as_tensor(dataset.K[0], dtype=torch.float64)
    c, s = np.cos(params["angle"]), np.sin(params["angle"])
    pivot = torch.tensor([[1.0, 0.0, float(K[0, 2])], [0.0, 1.0, float(K[1, 2])], [0, 0, 1]],
                         dtype=torch.float64)  # fmt: skip
    rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    their_crop = (torch.as_tensor(theirs["cam_intr"], dtype=torch.float64) @ torch.linalg.inv(K)
                  @ pivot @ rotation @ torch.linalg.inv(pivot))  # fmt: skip
    our_crop = ours["image_to_input"].double()

    def back(points, crop):
        points = points.reshape(-1, 2)
        homogeneous = torch.cat([points, points.new_ones(len(points), 1)], 1)
        return (homogeneous @ torch.linalg.inv(crop).T)[:, :2]

    def image_diff(ours_points, their_points):
        return float((back(ours_points, our_crop) - back(their_points, their_crop)).abs().max())

    # Our pooling on their object box (brought into our crop): separates the box from the
    # pooling rule.
    corners = back(their_obj, their_crop)
    corners = torch.cat([corners, corners.new_ones(2, 1)], 1) @ our_crop.T
    our_cells_their_box = _mask_cells(sides, pair.gt_object_masks.tensor, corners[:, :2].reshape(4))
    size = float(input_size)
    square = torch.tensor([[0.0, 0.0], [size, size]], dtype=torch.float64)
    in_image = {
        "crop_box_px": image_diff(square, square),
        "hand_box_px": image_diff(hand_box, their_hand),
        "object_box_px": image_diff(obj_box, their_obj),
        "joints2d_px": image_diff(pair.gt_joints2d[0].double(), their_joints),
        "control_points_px": image_diff(pair.gt_control_points2d[0].double(), their_p2d),
        "crop_side_px": {"authors": float(back(square, their_crop).diff(dim=0)[0, 0]),
                         "ours": float(back(square, our_crop).diff(dim=0)[0, 0])},
    }  # fmt: skip
    draws = {"angle_rad": float(params["angle"]), "scale": float(params["scale"]),
             "center_offset": [float(v) for v in params["center_offset"]],
             "blur_radius_px": float(params["blur"]),
             "color": {k: float(v) for k, v in params["color"].items()},
             "color_order": list(params["color_order"])}  # fmt: skip
    return {
        "draws": draws,
        "in_original_image": in_image,
        "joints2d_px": float((pair.gt_joints2d[0].double() - their_joints).abs().max()),
        "hand_box_px": float((hand_box - their_hand).abs().max()),
        "object_box_px": float((obj_box - their_obj).abs().max()),
        "control_points_px": float(
            (pair.gt_control_points2d[0].double() - their_p2d).abs().max()
        ),
        "image_grey_levels": float((our_grey - their_grey).abs().mean()),
        "mask_cells": int((our_cells != their_cells).sum()),
        "mask_cells_our_pooling_on_their_box": int((our_cells_their_box != their_cells).sum()),
        "K": float((ours["camera_K"].double() - torch.as_tensor(theirs["cam_intr"])).abs().max()),
        "mano_global_rotation_rad": float((our_rot - their_rot).abs().max()),
        "boxes": {"authors": {"hand": their_hand.tolist(), "object": their_obj.tolist()},
                  "ours": {"hand": hand_box.tolist(), "object": obj_box.tolist()}},  # fmt: skip
    }


# ----------------------------------------------------------------------------- e
def time_train_steps(sides, size=512, repeats=5):
    """Seconds of ``repeats`` training steps per side, alternating: (the fastest per side,
    every step). The fastest is the step's cost on a machine shared with other work, whose
    load only ever adds time."""
    sides.reset(torch.float32)
    sides.theirs.train(), sides.ours.train()
    theirs_batch, ours_batch = training_batch(size, torch.float32)
    their_opt, _ = authors_checkout.authors_optimizer(sides.theirs.parameters())
    our_opt, our_sched = _our_optimizer(sides)
    times = {"authors": [], "ours": []}
    for _ in range(repeats):
        start = time.perf_counter()
        total, _ = _their_loss(sides, theirs_batch)
        their_opt.zero_grad()
        total.backward()
        their_opt.step()
        times["authors"].append(time.perf_counter() - start)
        start = time.perf_counter()
        total, _ = _our_loss(sides, ours_batch)
        our_opt.zero_grad()
        total.backward()
        our_opt.step()
        our_sched.step()
        times["ours"].append(time.perf_counter() - start)
    return {side: float(np.min(t)) for side, t in times.items()}, times

