#!/usr/bin/env python
"""The project's main job on its embedded default (``make demo``), on CPU in minutes: make the
synthetic set, evaluate the tiny model (configs/synthetic/handobj_tiny_fast.yaml) as it starts,
fine-tune it from DEMO_CHECKPOINT for a time budget (``--teacher-init ""``: from random weights),
pseudo-label the synthetic videos with it, self-train a student, evaluate both, run the demo on
evaluation images, and write <output>/summary.json. The stages are
handobj_d2/engine/demo_job.py's; rerunning resumes. ``--iters N`` / ``--student-iters N`` train
for fixed iteration counts instead of budgets (reproducible across machines).

    python tools/run_demo.py --output output/demo
"""

import argparse
import json
import logging
import os
import sys

from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.engine.demo_job import DemoJob

CONFIG = "configs/synthetic/handobj_tiny_fast.yaml"
# The teacher's starting weights: CONFIG trained on 2000 synthetic frames of seed 1 (make demo's
# set is seed 0) by tools/make_demo_checkpoint.py (make demo-checkpoint).
DEMO_CHECKPOINT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "checkpoints",
    "handobj_tiny_fast_synthetic.pth",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--config-file", default=CONFIG)
    parser.add_argument("--train", type=int, default=400, help="labeled synthetic frames")
    parser.add_argument("--eval", type=int, default=32, help="evaluation frames")
    parser.add_argument("--videos", type=int, default=4, help="unlabeled videos")
    parser.add_argument("--frames-per-video", type=int, default=24)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"))
    parser.add_argument(
        "--teacher-seconds",
        type=float,
        default=225.0,
        help="teacher training budget (set-up and speed measurement included)",
    )
    parser.add_argument(
        "--teacher-init",
        default=DEMO_CHECKPOINT,
        help="weights the teacher starts from ('' = random; default: the project's checkpoint "
        "pre-trained on its own synthetic data, rebuilt by make demo-checkpoint)",
    )
    parser.add_argument("--student-seconds", type=float, default=60.0,
                        help="student training budget")  # fmt: skip
    parser.add_argument(
        "--iters",
        type=int,
        default=0,
        help="teacher iterations; 0: as many as --teacher-seconds hold",
    )
    parser.add_argument(
        "--student-iters",
        type=int,
        default=0,
        help="student iterations; 0: as many as --student-seconds hold",
    )
    parser.add_argument("--demo-images", type=int, default=4)
    parser.add_argument(
        "--demo-boxes",
        choices=("given", "detected"),
        default="given",
        help="demo images: hand and object boxes from the labels (as in the evaluation) or "
        "from the model's own detector",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)



def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.teacher_init and not os.path.isfile(args.teacher_init):
        raise SystemExit(f"--teacher-init {args.teacher_init}: no such file (make demo-checkpoint)")
    out = os.path.abspath(args.output)
    for name in ("detectron2", "handobj_d2"):  # once: the console and <output>/log.txt
        setup_logger(output=out, name=name)
    data_root = os.path.join(os.environ.get("HANDOBJ_DATASETS", "datasets"), "synthetic")
    summary = DemoJob(args, out, data_root).run()
    print(json.dumps(summary, indent=2))
    print(f"\nEverything is in {out}; summary: {os.path.join(out, 'summary.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
