#!/usr/bin/env python
"""Benchmarks that print one JSON object each; speed is measured here, never in tests.

    python dev/benchmark.py --task TASK [task options]     (or tools/benchmark.py, the same)

Each task is a function in BENCHMARK_REGISTRY, registered under its task name, that takes the
parsed arguments and returns a JSON-serialisable dict; ``main`` prints it. The options of every
task are in ``add_arguments``; default config paths are the repository's. Measured numbers and
the machines they came from are in README.md's Benchmarks section, not here.
"""

import argparse
import json
import os

from detectron2.utils.registry import Registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BENCHMARK_REGISTRY = Registry("BENCHMARK")
BENCHMARK_REGISTRY.__doc__ = """Benchmark tasks by name: ``fn(args) -> dict``."""


def repo_path(path):
    """``path`` (relative to the repository root) as an absolute path."""
    return os.path.join(REPO, path)


def add_arguments(parser):
    parser.add_argument("--config-file", default=repo_path("configs/synthetic/handobj_tiny.yaml"))
    parser.add_argument("--image-size", type=int, default=512, help="square input side, pixels")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    parser.add_argument("--num-samples", type=int, default=1000, help="scorer: samples to score")
    parser.add_argument("--num-objects", type=int, default=64, help="pnp: objects per batch")
    parser.add_argument(
        "--reference-seconds-per-sample",
        type=float,
        help="scorer: the HO3D challenge's eval.py timed on the same machine (seconds per "
        "sample); the speed-up over it is printed",
    )
    parser.add_argument(
        "--reference-samples-per-s",
        type=float,
        help="mapper: a reference augmentation's throughput on the same machine (samples/s); the "
        "speed-up over it is printed",
    )
    parser.add_argument(
        "--baseline-config-file",
        default="",
        help="train_step: also time this config, alternating, and print the speed-up over it",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    tasks = sorted(name for name, _ in BENCHMARK_REGISTRY)
    parser.add_argument("--task", required=True, choices=tasks)
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = {"task": args.task, **BENCHMARK_REGISTRY.get(args.task)(args)}
    print(json.dumps(result, indent=2))
    return 0


HO3D_V2_EVALUATION_SIZE = 11524


@BENCHMARK_REGISTRY.register()
def scorer(args):
    """Offline HO3D scorer (``tools/evaluate_ho3d.py``) end to end, reading and writing files,
    on ``--num-samples`` random hands written in the challenge's format. Reports the median
    over ``--repeats`` runs, the projection to HO3D v2's 11,524 evaluation images and the
    speed-up over the challenge's script."""
    import os
    import tempfile
    import time

    import numpy as np

    from handobj_d2.evaluation.ho3d_scorer import evaluate

    rng = np.random.default_rng(0)
    num = args.num_samples
    joints = rng.normal(0, 0.04, (num, 21, 3)) + np.array([0.0, 0.0, -0.5])
    bones = rng.integers(0, 21, (778, 2))
    weights = rng.uniform(0, 1, (778, 1))
    vertices = weights * joints[:, bones[:, 0]] + (1 - weights) * joints[:, bones[:, 1]]
    vertices += rng.normal(0, 0.006, vertices.shape)
    files = {
        "evaluation_xyz.json": joints.tolist(),
        "evaluation_verts.json": vertices.tolist(),
        "pred.json": [
            (joints + rng.normal(0, 0.01, joints.shape)).tolist(),
            (vertices + rng.normal(0, 0.01, vertices.shape)).tolist(),
        ],
    }
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            with open(os.path.join(folder, name), "w") as f:
                json.dump(data, f)
        del files
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            evaluate(folder, os.path.join(folder, "out"))
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    per_sample = seconds / num
    result = {
        "num_samples": num,
        "repeats": len(times),
        "seconds_total": round(seconds, 3),
        "seconds_per_sample": per_sample,
        "projected_seconds_ho3d_v2": round(per_sample * HO3D_V2_EVALUATION_SIZE, 1),
    }
    if args.reference_seconds_per_sample:
        result["challenge_seconds_per_sample"] = args.reference_seconds_per_sample
        result["speedup_vs_challenge"] = round(args.reference_seconds_per_sample / per_sample, 1)
    return result


def _inference_inputs(size, batch_size, rng):
    """Mapper-format test inputs: random (3, size, size) images with given hand and object
    boxes, intrinsics and object control points (so voting + PnP run too)."""
    import numpy as np
    import torch

    from handobj_d2.geometry import box_control_points

    corners = np.array(np.meshgrid([-0.04, 0.04], [-0.03, 0.03], [-0.05, 0.05])).reshape(3, -1).T
    K = np.array([[1.6 * size, 0, size / 2], [0, 1.6 * size, size / 2], [0, 0, 1]], np.float32)
    return [
        {
            "image": torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)),
            "height": size,
            "width": size,
            "hand_box": np.array([0.15, 0.25, 0.6, 0.75]) * size,
            "object_box": np.array([0.45, 0.2, 0.85, 0.7]) * size,
            "camera_K": K,
            "control_points3d": box_control_points(corners),
        }
        for _ in range(batch_size)
    ]


def _timed(step, device, warmup, repeats):
    """Wall-clock seconds of ``repeats`` calls of ``step()`` after ``warmup`` untimed ones,
    each including the work it queued on a CUDA ``device``."""
    import time

    import torch

    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        step()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _device_name(device):
    import torch

    if str(device).startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} torch threads)"


def _inference_speeds(config_files, opts, args):
    """Per config file, the speed of its model (random weights, given boxes) on ``args``'
    random inputs. The models take turns batch by batch, so that a change in the machine's load
    affects them alike. Returns one result dict per config file."""
    import numpy as np
    import torch
    from detectron2.modeling import build_model

    from handobj_d2.engine import setup_cfg

    cfgs, models = [], []
    for config_file in config_files:
        cfg = setup_cfg(config_file, list(opts) + ["MODEL.HANDOBJ.INFERENCE_BOXES", "given"])
        torch.manual_seed(0)
        cfgs.append(cfg)
        models.append(build_model(cfg).eval())
    inputs = _inference_inputs(args.image_size, args.batch_size, np.random.default_rng(0))
    times = [[] for _ in models]
    with torch.no_grad():
        for i in range(args.warmup + args.repeats):
            for cfg, model, model_times in zip(cfgs, models, times):
                seconds = _timed(lambda: model(inputs), cfg.MODEL.DEVICE, 0, 1)[0]
                if i >= args.warmup:
                    model_times.append(seconds)
    return [
        {
            "config_file": config_file,
            "device": _device_name(cfg.MODEL.DEVICE),
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "repeats": len(model_times),
            "torch_threads": torch.get_num_threads(),
            "seconds_per_batch": float(np.mean(model_times)),
            "seconds_per_image": float(np.mean(model_times)) / args.batch_size,
            "seconds_per_image_min": float(np.min(model_times)) / args.batch_size,
        }
        for config_file, cfg, model_times in zip(config_files, cfgs, times)
    ]


@BENCHMARK_REGISTRY.register()
def inference(args):
    """Model inference (eval mode, no_grad, MODEL.HANDOBJ.INFERENCE_BOXES "given") on batches
    of ``--batch-size`` random ``--image-size`` images; mean over ``--repeats`` batches after
    ``--warmup`` untimed ones. Random weights: speed does not depend on them."""
    return _inference_speeds([args.config_file], args.opts, args)[0]


RELEASED_CONFIG = repo_path("configs/HO3D-v2/handobj_R50_FPN_released.yaml")
DEFAULT_HO3D_CONFIG = repo_path("configs/HO3D-v2/handobj_R50_FPN.yaml")


@BENCHMARK_REGISTRY.register()
def released_inference(args):
    """The "inference" task for the authors' released network (``RELEASED_CONFIG``) next to
    the default model (``DEFAULT_HO3D_CONFIG``: Detectron2's R50-FPN, same heads), same inputs,
    taking turns (``--config-file`` is not used; ``opts`` apply to both)."""
    released, default = _inference_speeds([RELEASED_CONFIG, DEFAULT_HO3D_CONFIG], args.opts, args)
    return {
        "released": released,
        "default": default,
        "released_over_default": released["seconds_per_image"] / default["seconds_per_image"],
    }


def synthetic_voting_field(num_objects, resolution, image_size, rng):
    """Exact object-head predictions for random object poses seen by a camera with a
    ``image_size`` square image: every cell predicts every control point exactly (confidences
    random in [0, 1]). Returns a dict of torch tensors ``coords``
    (N, 21, R, R, 2) box-normalised, ``confidence`` (N, 21, R, R), ``object_boxes`` (N, 4) px,
    and numpy ``points3d`` (N, 21, 3) m, ``K`` (N, 3, 3), ``R`` (N, 3, 3), ``t`` (N, 3) m."""
    import cv2
    import numpy as np
    import torch

    from handobj_d2.geometry import box_control_points, project_points

    K = np.array(
        [[1.2 * image_size, 0, image_size / 2], [0, 1.2 * image_size, image_size / 2], [0, 0, 1]]
    )
    points3d, rotations, translations, boxes, normalised = [], [], [], [], []
    for _ in range(num_objects):
        extent = rng.uniform(0.02, 0.1, 3)
        corners = np.array(np.meshgrid(*[[-e, e] for e in extent])).reshape(3, -1).T
        points = box_control_points(corners + rng.uniform(-0.02, 0.02, 3))
        axis = rng.normal(size=3)
        R = cv2.Rodrigues(axis / np.linalg.norm(axis) * rng.uniform(0, np.pi))[0]
        t = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(0.4, 0.8)])
        pixels = project_points(points @ R.T + t, K)
        box = np.concatenate([pixels.min(0) - 5, pixels.max(0) + 5])
        points3d.append(points)
        rotations.append(R)
        translations.append(t)
        boxes.append(box)
        normalised.append((pixels - box[:2]) / (box[2:] - box[:2]))
    n, r = num_objects, resolution
    coords = np.broadcast_to(np.array(normalised)[:, :, None, None], (n, 21, r, r, 2))
    return {
        "coords": torch.tensor(coords, dtype=torch.float32),
        "confidence": torch.tensor(rng.uniform(0, 1, (n, 21, r, r)), dtype=torch.float32),
        "object_boxes": torch.tensor(np.array(boxes), dtype=torch.float32),
        "points3d": np.array(points3d),
        "K": np.broadcast_to(K, (n, 3, 3)),
        "R": np.array(rotations),
        "t": np.array(translations),
    }


@BENCHMARK_REGISTRY.register()
def pnp(args):
    """Voting + PnP-RANSAC (EPnP) on exact synthetic cell predictions for ``--num-objects``
    objects (``--image-size`` camera) at the config's voting settings; mean over ``--repeats``
    after ``--warmup``."""
    import time

    import numpy as np

    from handobj_d2.engine import setup_cfg
    from handobj_d2.modeling.pnp import control_point_estimates, solve_pnp, vote_control_points

    cfg = setup_cfg(args.config_file, args.opts)
    obj = cfg.MODEL.HANDOBJ.OBJECT
    field = synthetic_voting_field(
        args.num_objects,
        cfg.MODEL.HANDOBJ.POOLER_RESOLUTION,
        args.image_size,
        np.random.default_rng(0),
    )
    times = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        votes, vote_confidence, valid = vote_control_points(
            field["coords"],
            field["confidence"],
            field["object_boxes"],
            obj.VOTE_TOPK,
            obj.VOTE_CONF_THRESH,
        )
        control_point_estimates(votes, vote_confidence, valid)
        R, t, ok = solve_pnp(
            votes,
            valid,
            field["points3d"],
            field["K"],
            obj.MIN_PNP_POINTS,
            obj.PNP_REPROJ_ERROR,
            obj.PNP_ITERATIONS,
        )
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    cos = (np.einsum("nij,nij->n", R, field["R"]) - 1) / 2
    return {
        "config_file": args.config_file,
        "image_size": args.image_size,
        "num_objects": args.num_objects,
        "repeats": len(times),
        "ms_per_object": 1000 * float(np.mean(times)) / args.num_objects,
        "solved": int(ok.sum()),
        "max_translation_error_mm": 1000 * float(np.abs(t - field["t"]).max()),
        "max_rotation_error_deg": float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max()),
    }


def mapper_benchmark_record(rng, width=640, height=480):
    """An HO3D-like training record (MANO hand, posed box object, intrinsics) in a
    ``width`` x ``height`` image, its decoded BGR image (blurred noise: some structure, like a
    photo) and its object mask (height, width) bool."""
    import cv2
    import numpy as np

    from handobj_d2.geometry import box_control_points, points_to_box, project_points

    K = np.array([[615.0, 0.0, width / 2], [0.0, 615.0, height / 2], [0.0, 0.0, 1.0]])
    joints3d = np.array([0.0, 0.0, 0.6]) + rng.normal(0, 0.03, (21, 3))
    corners = np.array(np.meshgrid([-0.04, 0.04], [-0.06, 0.06], [-0.03, 0.03])).reshape(3, -1).T
    R, t = np.eye(3), np.array([0.05, 0.0, 0.62])
    points3d = box_control_points(corners)
    points2d = project_points(points3d @ R.T + t, K)
    joints2d = project_points(joints3d, K)
    mask = np.zeros((height, width), bool)
    x1, y1, x2, y2 = points_to_box(points2d).astype(int)
    mask[y1:y2, x1:x2] = True
    record = {
        "image_id": "benchmark",
        "height": height,
        "width": width,
        "camera_K": K,
        "annotations": [
            {
                "category_id": 0,
                "bbox": points_to_box(joints2d),
                "bbox_mode": 0,
                "joints2d": joints2d,
                "joints3d": joints3d,
                "mano_pose": rng.normal(0, 0.3, 48),
                "mano_shape": rng.normal(0, 1, 10),
            },
            {
                "category_id": 1,
                "bbox": points_to_box(points2d[:8]),
                "bbox_mode": 0,
                "object_name": "box",
                "object_R": R,
                "object_t": t,
                "control_points3d": points3d,
                "control_points2d": points2d,
            },
        ],
    }
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    return record, image, mask


@BENCHMARK_REGISTRY.register()
def mapper(args):
    """Training HandObjectDatasetMapper throughput in samples/s, image decoding excluded: one
    640x480 image and its object mask are decoded before timing, then ``--num-samples``
    samples get the full training augmentation (rotation, scale/centre jitter, colour jitter,
    blur, mask warp) into ``--image-size`` crops, in this process. Measured with OpenCV on
    one thread (like the PIL reference) and with OpenCV's default thread count."""
    import time

    import cv2
    import numpy as np

    from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
    from handobj_d2.engine import setup_cfg

    opts = list(args.opts) + ["INPUT.HANDOBJ.CROP_SIZE", str(args.image_size)]
    cfg = setup_cfg(args.config_file, opts)
    mapper = HandObjectDatasetMapper(cfg, is_train=True)
    rng = np.random.default_rng(0)
    record, image, mask = mapper_benchmark_record(rng)
    np.random.seed(0)

    def samples_per_second(threads):
        previous = cv2.getNumThreads()
        cv2.setNumThreads(threads)
        try:
            for _ in range(args.warmup):
                mapper.map(record, image, mask)
            start = time.perf_counter()
            for _ in range(args.num_samples):
                mapper.map(record, image, mask)
            return args.num_samples / (time.perf_counter() - start)
        finally:
            cv2.setNumThreads(previous)

    default_threads = cv2.getNumThreads()
    single = samples_per_second(1)
    multi = samples_per_second(default_threads)
    result = {
        "samples_per_s": round(single, 1),
        "samples_per_s_opencv_default_threads": round(multi, 1),
        "opencv_default_threads": default_threads,
        "num_samples": args.num_samples,
        "config": {
            "config_file": args.config_file,
            "input_size": [record["width"], record["height"]],
            "crop_size": cfg.INPUT.HANDOBJ.CROP_SIZE,
            "crop_scale": cfg.INPUT.HANDOBJ.CROP_SCALE,
            "rotation": cfg.INPUT.HANDOBJ.ROTATION,
            "scale_jitter": cfg.INPUT.HANDOBJ.SCALE_JITTER,
            "center_jitter": cfg.INPUT.HANDOBJ.CENTER_JITTER,
            "color_jitter": list(cfg.INPUT.HANDOBJ.COLOR_JITTER),
            "blur_max_sigma": cfg.INPUT.HANDOBJ.BLUR_MAX_SIGMA,
            "image_format": cfg.INPUT.FORMAT,
        },
    }
    if args.reference_samples_per_s:
        result["reference_samples_per_s"] = args.reference_samples_per_s
        result["speedup_vs_reference"] = round(single / args.reference_samples_per_s, 2)
    return result


def _train_step_setup(config_file, opts, image_size, batch_size):
    """Model, optimizer and one training batch (``batch_size`` samples that the training mapper
    made from the mapper benchmark's record at ``image_size`` crops), seeded."""
    import numpy as np
    import torch

    from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
    from handobj_d2.engine import setup_cfg
    from handobj_d2.engine.trainer import HandObjectTrainer

    cfg = setup_cfg(config_file, list(opts) + ["INPUT.HANDOBJ.CROP_SIZE", str(image_size)])
    torch.manual_seed(0)
    np.random.seed(0)
    mapper = HandObjectDatasetMapper(cfg, is_train=True)
    record, image, mask = mapper_benchmark_record(np.random.default_rng(0))
    batch = [mapper.map(record, image, mask) for _ in range(batch_size)]
    model = HandObjectTrainer.build_model(cfg).train()
    optimizer = HandObjectTrainer.build_optimizer(cfg, model)

    def step():
        losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return cfg, step, parameters


@BENCHMARK_REGISTRY.register()
def train_step(args):
    """Training iterations (forward, backward, optimizer step; data loading excluded) on
    batches of ``--batch-size`` samples that the training mapper made from the mapper
    benchmark's record at ``--image-size`` crops; mean over ``--repeats`` iterations after
    ``--warmup`` untimed ones, on ``MODEL.DEVICE`` (pass ``MODEL.DEVICE cuda`` for a GPU).
    Random weights: speed does not depend on them.

    With ``--baseline-config-file`` the same is measured for that config in the same process,
    its iterations alternating with the config's (so that load on a shared machine hits both
    alike), and ``speedup_vs_baseline`` is the ratio of their median times."""
    import numpy as np
    from detectron2.utils.events import EventStorage

    configs = {"config": args.config_file}
    if args.baseline_config_file:
        configs["baseline"] = args.baseline_config_file
    setups = {
        name: _train_step_setup(path, args.opts, args.image_size, args.batch_size)
        for name, path in configs.items()
    }
    times = {name: [] for name in setups}
    with EventStorage(0):
        for i in range(args.warmup + args.repeats):
            for name, (cfg, step, _) in setups.items():
                (seconds,) = _timed(step, cfg.MODEL.DEVICE, 0, 1)
                if i >= args.warmup:
                    times[name].append(seconds)

    def summary(name):
        parameters = setups[name][2]
        return {
            "config_file": configs[name],
            "parameters": parameters,
            "seconds_per_iteration": float(np.mean(times[name])),
            "seconds_per_iteration_median": float(np.median(times[name])),
            "seconds_per_iteration_min": float(np.min(times[name])),
            "images_per_s": args.batch_size / float(np.mean(times[name])),
        }

    cfg = setups["config"][0]
    result = {
        **summary("config"),
        "device": _device_name(cfg.MODEL.DEVICE),
        "crop_size": args.image_size,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
    }
    if "baseline" in setups:
        result["baseline"] = summary("baseline")
        result["speedup_vs_baseline"] = round(
            float(np.median(times["baseline"]) / np.median(times["config"])), 2
        )
    return result


if __name__ == "__main__":
    raise SystemExit(main())
