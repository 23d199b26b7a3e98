"""Head-to-head on our synthetic data: the authors' HOModel and our released-recipe model train
from the same random start (theirs, converted by tools/convert_released_checkpoint.py) on the
same synthetic HO3D-format frames, without augmentation, for the same iterations on the CPU;
their epoch loop asserts CUDA, so their model, dataset and optimiser set-up are driven here.

    OMP_NUM_THREADS=1 python -m dev.authors_head_to_head --authors-code DIR --workdir /tmp/h2h \
        --iterations 150 --out docs/images/authors_head_to_head.png

Both sides see the same batches (their dataset's frames, in the same shuffled order; ours
through our mapper). At the end both are evaluated on the same inputs, their dataset's crops:
object control points (confidence-weighted top-10 votes above 0.5, else the best vote, for
both), their error in input pixels, and the pose from EPnP-RANSAC of the 21 points: ADD (mm)
and the share within 10 % of the object's diameter. Prints one JSON object last.
"""

import argparse
import json
import os
import pickle
import sys
import time

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler

from dev import authors_checkout
from dev.authors_compare import CONFIG, _object_models
from dev.authors_files import released_control_points, write_authors_training_files
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
from handobj_d2.data.datasets.ho3d import load_ho3d
from handobj_d2.engine import HandObjectTrainer, setup_cfg
from handobj_d2.modeling.released_checkpoint import RELEASED_CONTROL_POINT_ORDER

NO_AUGMENTATION = ["INPUT.HANDOBJ.ROTATION", "0.0", "INPUT.HANDOBJ.SCALE_JITTER", "0.0",
                   "INPUT.HANDOBJ.CENTER_JITTER", "0.0",
                   "INPUT.HANDOBJ.COLOR_JITTER", "[0.0, 0.0, 0.0, 0.0]",
                   "INPUT.HANDOBJ.BLUR_MAX_SIGMA", "0.0"]  # fmt: skip


def weighted_points(x, y, conf, topk=10, thresh=0.5):
    """Per-cell votes x, y (N, R, R, P) box units, conf (N, R, R, P) -> (N, P, 2) box units."""
    votes = torch.stack([x, y], -1).flatten(1, 2).transpose(1, 2)  # (N, P, R*R, 2)
    conf = conf.flatten(1, 2).transpose(1, 2)
    top_conf, index = conf.topk(topk, dim=-1)
    top = votes.gather(2, index[..., None].expand(-1, -1, -1, 2))
    weights = top_conf * (top_conf > thresh)
    total = weights.sum(-1, keepdim=True)
    mean = (top * weights[..., None]).sum(-2) / total.clamp_min(1e-12)
    return torch.where(total > 0, mean, top[..., 0, :])


def _their_batch(dataset, indices):
    """Their dataset's samples, each read from the unmodified annotations: their __getitem__
    rotates the stored MANO parameters in place (``mano_param[:3] = ...`` on
    ``self.mano_params[idx]``), which their training never accumulates because its DataLoader
    worker processes start every epoch from the untouched dataset; read repeatedly in one
    process it would re-apply the OpenGL -> OpenCV change on every read."""
    if not hasattr(dataset, "pristine_mano"):
        dataset.pristine_mano = [m.copy() for m in dataset.mano_params]
    for i in indices:
        dataset.mano_params[i] = dataset.pristine_mano[i].copy()
    samples = [dataset[i] for i in indices]
    keys = ("img", "bbox_hand", "bbox_obj", "mano_param", "joints2d", "obj_p2d", "obj_mask")
    return {k: torch.stack([torch.as_tensor(np.asarray(s[k])).float() for s in samples])
            for k in keys}  # fmt: skip


def _their_step(theirs, optimizer, dataset, indices, curves):
    b = _their_batch(dataset, indices)
    total, losses = theirs(b["img"], b["bbox_hand"], b["bbox_obj"], mano_params=b["mano_param"],
                           joints_uv=b["joints2d"], obj_p2d_gt=b["obj_p2d"],
                           obj_mask=b["obj_mask"])  # fmt: skip
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    curves["authors"].append({k: float(v) for k, v in losses.items()})
    return total


def _our_step(ours, optimizer, scheduler, mapper, records, indices, curves):
    losses = ours([mapper(dict(records[i])) for i in indices])
    total = sum(losses.values())
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    scheduler.step()
    row = {k: float(v.detach()) for k, v in losses.items()}
    row["total"] = float(total.detach())
    curves["ours"].append(row)
    return total


def train(args):
    os.makedirs(args.workdir, exist_ok=True)
    torch.manual_seed(args.seed)
    root = os.path.join(args.workdir, "ho3d")
    if not os.path.isfile(os.path.join(root, "train.txt")):
        from handobj_d2.data.synthetic.generate import generate_dataset

        generate_dataset(root, train=args.frames, evaluation=1, videos=0, progress=False)
    process = os.path.join(args.workdir, "ho3d-process")
    names = write_authors_training_files(root, process)
    authors = authors_checkout.import_authors(args.authors_code)
    mano_root = args.mano_root
    if not mano_root:  # the hand the synthetic frames were made with
        from handobj_d2.mano import write_synthetic_mano

        mano_root = os.path.join(args.workdir, "synthetic_MANO_RIGHT.pkl")
        write_synthetic_mano(mano_root)
    mano_dir = authors_checkout.mano_folder(mano_root, args.workdir)
    dataset = authors.ho3d.HO3D(
        dataset_root=root, obj_model_root=_object_models(root, args.workdir),
        train_label_root=process, mode="train", inp_res=args.size, max_rot=0.0,
        scale_jittering=0.0, center_jittering=0.0, hue=0.0, saturation=0.0, contrast=0.0,
        brightness=0.0, blur_radius=0.0,
    )  # fmt: skip
    theirs = authors_checkout.build_authors_model(authors, mano_dir)
    src = os.path.join(args.workdir, "start.pth.tar")
    dst = os.path.join(args.workdir, "start_converted.pth")
    torch.save({"state_dict": theirs.state_dict()}, src)
    from tools import convert_released_checkpoint

    opts = ["MODEL.DEVICE", "cpu", "MODEL.MANO.MODEL_PATH",
            os.path.join(mano_dir, "MANO_RIGHT.pkl"), "INPUT.HANDOBJ.CROP_SIZE", str(args.size),
            *NO_AUGMENTATION, *args.opts]  # fmt: skip
    assert convert_released_checkpoint.main([src, dst, "--config-file", CONFIG, *opts]) == 0
    cfg = setup_cfg(CONFIG, opts + ["MODEL.WEIGHTS", dst])
    ours = build_model(cfg)
    DetectionCheckpointer(ours).load(dst)
    mapper = HandObjectDatasetMapper(cfg, True)
    records = {os.path.relpath(r["file_name"], os.path.join(root, "train")).replace(
        os.sep + "rgb" + os.sep, "/").rsplit(".", 1)[0]: r for r in load_ho3d(root, "train")}  # fmt: skip
    records = [records[n] for n in names]
    their_opt, _ = authors_checkout.authors_optimizer(theirs.parameters())
    our_opt = HandObjectTrainer.build_optimizer(cfg, ours)
    our_sched = build_lr_scheduler(cfg, our_opt)
    theirs.train(), ours.train()
    rng = np.random.default_rng(args.seed)
    order, curves, seconds = [], {"authors": [], "ours": []}, {"authors": 0.0, "ours": 0.0}
    for it in range(args.iterations):
        if len(order) < args.batch:
            order += rng.permutation(len(names)).tolist()
        indices, order = order[: args.batch], order[args.batch :]
        start = time.perf_counter()
        if args.ours_only:
            total = torch.zeros(())
        else:
            total = _their_step(theirs, their_opt, dataset, indices, curves)
        seconds["authors"] += time.perf_counter() - start
        start = time.perf_counter()
        if args.authors_only:
            our_total = torch.zeros(())
        else:
            our_total = _our_step(ours, our_opt, our_sched, mapper, records, indices, curves)
        seconds["ours"] += time.perf_counter() - start
        if it % 10 == 0:
            print(f"iter {it}: authors {float(total):.1f} ours {float(our_total):.1f}", flush=True)
    return dataset, theirs, ours, names, root, curves, seconds


def evaluate(dataset, theirs, ours, names, root):
    """Control-point error (px) and ADD of both models on their dataset's crops."""
    theirs.eval(), ours.eval()
    models, results = {}, {"authors": [], "ours": []}
    for i, name in enumerate(names):
        s = dataset[i]
        img = s["img"][None]
        hand = torch.as_tensor(s["bbox_hand"]).float()[None]
        obj = torch.as_tensor(s["bbox_obj"]).float()[None]
        size = obj[0, 2:] - obj[0, :2]
        gt = torch.as_tensor(s["obj_p2d"]).float() * size + obj[0, :2]
        with torch.no_grad():
            _, _, preds = theirs(img, hand, obj, roots3d=torch.zeros(1, 3))
            x, y, c = (torch.as_tensor(v) for v in preds)
            their_points = weighted_points(x, y, c)[0] * size + obj[0, :2]
            # do_postprocess=False: the ROI heads' Instances, in input pixels.
            out = ours.inference(
                [{"image": s["img"] * 255, "height": img.shape[2], "width": img.shape[3],
                  "hand_box": hand[0], "object_box": obj[0]}], do_postprocess=False,
            )[0]  # fmt: skip
        our_points = torch.empty_like(their_points)
        our_points[list(RELEASED_CONTROL_POINT_ORDER)] = out.pred_control_points2d[0]
        seq, fid = name.split("/")
        with open(os.path.join(root, "train", seq, "meta", fid + ".pkl"), "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        if meta["objName"] not in models:
            xyz = os.path.join(root, "models", meta["objName"], "points.xyz")
            models[meta["objName"]] = np.loadtxt(xyz, ndmin=2)[:, :3]
        points3d = models[meta["objName"]]
        flip = np.diag([1.0, -1.0, -1.0])
        R = flip @ cv2.Rodrigues(np.asarray(meta["objRot"], np.float64).reshape(3))[0]
        t = flip @ np.asarray(meta["objTrans"], np.float64).reshape(3)
        control3d = released_control_points(points3d)
        K = np.asarray(s["cam_intr"], np.float64)
        diameter = np.linalg.norm(points3d.max(0) - points3d.min(0))
        for side, pred in (("authors", their_points), ("ours", our_points)):
            error = float((pred - gt).norm(dim=-1).mean())
            ok, rvec, tvec, _ = cv2.solvePnPRansac(control3d, pred.double().numpy(), K, None,
                                                   flags=cv2.SOLVEPNP_EPNP)  # fmt: skip
            if ok:
                R_pred = cv2.Rodrigues(rvec)[0]
                add = np.linalg.norm(points3d @ (R_pred - R).T + (tvec.reshape(3) - t), axis=1)
                add = float(add.mean())
            else:
                add = float("inf")
            results[side].append((error, add, add < 0.1 * diameter))
    out = {}
    for side, rows in results.items():
        err, add, hit = map(np.array, zip(*rows))
        out[side] = {"control_points_px": float(err.mean()),
                     "add_mm_median": float(np.median(add) * 1000),
                     "add_0.1d_percent": float(100 * hit.mean())}  # fmt: skip
    return out


def plot(curves, path, extra=None):
    """Loss curves side by side; ``extra``: (label, our curves of another run) drawn too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [("total_loss", "total", "total"), ("obj_reg_loss", "loss_object_coords", "object coords"),
             ("obj_conf_loss", "loss_object_confidence", "object confidence"),
             ("hm_joints2d_loss", "loss_joints2d", "2D joints"),
             ("mano_joints3d_loss", "loss_joints3d", "3D joints"),
             ("mano_mesh3d_loss", "loss_vertices3d", "vertices")]  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    lines = [("authors' code", curves["authors"], 0), ("handobj_d2", curves["ours"], 1)]
    if extra is not None:
        lines.append((extra[0], extra[1], 2))
    window = 10
    for ax, (theirs, ours, title) in zip(axes.flat, pairs):
        for label, rows, colour in lines:
            values = np.array([r[theirs if colour == 0 else ours] for r in rows])
            if not len(values):
                continue
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(values, color=f"C{colour}", alpha=0.25, linewidth=0.8)
            ax.plot(np.arange(window - 1, len(values)), smooth, color=f"C{colour}", label=label)
        ax.set_title(f"{title} (running mean of {window})")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(lines))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors-code", required=True)
    parser.add_argument("--mano-root", default="",
                        help="MANO_RIGHT.pkl or its folder; default: the synthetic hand the "
                        "frames are made with")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/images/authors_head_to_head.png")
    parser.add_argument("--ours-only", action="store_true",
                        help="train our side only (theirs stays at the start)")
    parser.add_argument("--authors-only", action="store_true",
                        help="train their side only (ours stays at the start)")
    parser.add_argument("--plot-with", default="",
                        help="curves.json of an earlier run: its curves are plotted, this run's "
                        "ours beside them as --label")
    parser.add_argument("--label", default="handobj_d2 (variant)")
    parser.add_argument("opts", nargs="*", help="our config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    dataset, theirs, ours, names, root, curves, seconds = train(args)
    result = {"iterations": args.iterations, "batch": args.batch, "input_px": args.size,
              "frames": len(names), "train_seconds": seconds,
              "final_losses": {side: c[-1] for side, c in curves.items() if c}}  # fmt: skip
    result["evaluation"] = evaluate(dataset, theirs, ours, names, root)
    if args.plot_with:
        with open(args.plot_with) as f:
            plot(json.load(f), args.out, (args.label, curves["ours"]))
    else:
        plot(curves, args.out)
    with open(os.path.join(args.workdir, "curves.json"), "w") as f:
        json.dump(curves, f)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
