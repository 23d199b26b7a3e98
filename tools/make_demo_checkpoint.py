#!/usr/bin/env python
"""Build the checkpoint ``make demo``'s teacher starts from (``make demo-checkpoint``).

The fast tiny model (configs/synthetic/handobj_tiny_fast.yaml) trained from random weights on
a synthetic set of its own (seed 1, so none of make demo's seed-0 evaluation frames), on CPU:

    python tools/make_demo_checkpoint.py --output output/demo_checkpoint \\
        --checkpoint checkpoints/handobj_tiny_fast_synthetic.pth

Writes the final weights as float16 (half the size; loading casts them back) to --checkpoint
and, next to it, <checkpoint>.json: the recipe and the model's metrics on the set's own
evaluation frames. Rerunning resumes the training from its last checkpoint in --output.
"""

import argparse
import io
import json
import logging
import os
import sys

import torch
from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.data.datasets.ho3d import register_ho3d
from handobj_d2.engine import setup_cfg
from handobj_d2.engine.pipeline import ensure_synthetic_dataset, evaluate_model, train_model
from handobj_d2.utils.io import write_atomically

CONFIG = "configs/synthetic/handobj_tiny_fast.yaml"
DATASET = "demo_checkpoint_{}"  # its train and evaluation splits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo_checkpoint",
                        help="folder of the synthetic set and the training")  # fmt: skip
    parser.add_argument("--checkpoint", default="checkpoints/handobj_tiny_fast_synthetic.pth")
    parser.add_argument("--config-file", default=CONFIG)
    parser.add_argument("--train", type=int, default=2000, help="labeled synthetic frames")
    parser.add_argument("--eval", type=int, default=32, help="evaluation frames")
    parser.add_argument("--seed", type=int, default=1, help="of the synthetic set")
    parser.add_argument("--iters", type=int, default=6000)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for name in ("detectron2", "handobj_d2"):
        setup_logger(output=args.output, name=name)
    logger = logging.getLogger("handobj_d2.make_demo_checkpoint")
    root = os.path.join(args.output, "synthetic")
    ensure_synthetic_dataset(root, train=args.train, evaluation=args.eval, videos=0,
                             image_size=tuple(args.image_size), seed=args.seed)  # fmt: skip
    for split in ("train", "evaluation"):
        register_ho3d(DATASET.format(split), root, split, "v2")
    steps = (int(0.8 * args.iters),)
    opts = [
        "OUTPUT_DIR", os.path.join(args.output, "training"),
        "DATASETS.TRAIN", (DATASET.format("train"),),
        "DATASETS.TEST", (DATASET.format("evaluation"),),
        "SOLVER.MAX_ITER", args.iters, "SOLVER.STEPS", steps,
        "SOLVER.CHECKPOINT_PERIOD", max(1, args.iters // 12), *args.opts,
    ]  # fmt: skip
    cfg = setup_cfg(args.config_file, [str(o) for o in opts])
    final = train_model(cfg, log_to_output=False)
    metrics = evaluate_model(cfg, final, os.path.join(args.output, "evaluation.json"))
    weights = torch.load(final, map_location="cpu", weights_only=False)["model"]
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    buffer = io.BytesIO()
    torch.save({"model": half}, buffer)
    write_atomically(args.checkpoint, buffer.getvalue())
    record = {
        "config_file": args.config_file,
        "opts": [str(o) for o in args.opts],
        "synthetic_set": {
            "train": args.train,
            "evaluation": args.eval,
            "seed": args.seed,
            "image_size": list(args.image_size),
        },  # fmt: skip
        "iterations": args.iters,
        "lr_steps": list(steps),
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "evaluation": metrics[DATASET.format("evaluation")],
    }
    write_atomically(args.checkpoint + ".json", json.dumps(record, indent=2))
    logger.info(f"Wrote {args.checkpoint} ({os.path.getsize(args.checkpoint) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
