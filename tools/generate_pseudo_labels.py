#!/usr/bin/env python
"""Pseudo-label unlabeled videos with a trained teacher (steps 2-4 of self-training).

    python tools/generate_pseudo_labels.py --config-file configs/synthetic/handobj_tiny.yaml \\
        --videos datasets/synthetic_shifted/videos --output output/pseudo_filtered \\
        MODEL.WEIGHTS output/synthetic_tiny/model_final.pth
    # the data-distillation baseline, boxes from a file, known intrinsics, 8 GPUs
    python tools/generate_pseudo_labels.py --config-file CFG --videos clips/ --output OUT \\
        --boxes boxes.json --intrinsics 615 615 320 240 --num-gpus 8 \\
        MODEL.WEIGHTS teacher.pth SEMI.MODE distillation

--videos takes video files, frame folders and directories holding them. Writes, in --output,
pseudo_labels.json (train a student with SEMI.PSEUDO_LABEL_FILES), scores.csv (every frame's
consistency scores and filter verdicts), summary.json (frames removed by each filter) and
per-video results (handobj_d2/semi/pseudo_labels.py). Rerunning the same command after an
interruption skips the finished videos. Boxes file format: handobj_d2/semi/teacher.py.
Multi-machine: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT.
"""

import argparse
import json
import logging
import os
import sys

import numpy as np
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.data.video import find_videos
from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.semi.pseudo_labels import (
    PseudoLabelGenerator,
    remove_temporary_files,
    write_atomically,
)
from handobj_d2.semi.teacher import build_teacher, distillation_transforms, load_boxes_file

# The settings a rerun must share with the run it resumes (kept in the output folder).
SETTINGS_FILE = "generation.json"

logger = logging.getLogger("handobj_d2.generate_pseudo_labels")


def parse_args(argv=None):
    parser = default_argument_parser(epilog=__doc__)
    for action in parser._actions:  # training flags of Detectron2's parser: not used here
        if action.dest in ("resume", "eval_only"):
            action.help = argparse.SUPPRESS
    parser.add_argument(
        "--videos",
        nargs="+",
        required=True,
        help="video files, frame folders, or directories holding them",
    )
    parser.add_argument("--output", required=True, help="output folder (resumed if it exists)")
    parser.add_argument(
        "--boxes",
        default="",
        help="JSON of per-frame hand/object boxes (else the model's detector)",
    )
    parser.add_argument(
        "--intrinsics",
        nargs=4,
        type=float,
        metavar=("FX", "FY", "CX", "CY"),
        help="pixels, for every video (else focal = longer image side, centred)",
    )
    return parser.parse_args(argv)  # fmt: skip


def camera_matrix(intrinsics):
    """(3, 3) K from [fx, fy, cx, cy], or None."""
    if intrinsics is None:
        return None
    fx, fy, cx, cy = intrinsics
    if fx <= 0 or fy <= 0:
        raise ValueError(f"--intrinsics: focal lengths must be positive, got {fx}, {fy}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def run_settings(args, cfg):
    """What determines the output: a rerun into the same folder must match it."""
    return {
        "config_file": os.path.abspath(args.config_file) if args.config_file else "",
        "weights": cfg.MODEL.WEIGHTS,
        "boxes": os.path.abspath(args.boxes) if args.boxes else "",
        "intrinsics": list(args.intrinsics) if args.intrinsics else None,
        "semi": json.loads(json.dumps(cfg.SEMI)),
    }


def check_inputs(args):
    """Every user-facing problem before any work starts (raises ValueError / OSError /
    HandObjectConfigError with a message naming the input); returns the config."""
    cfg = setup_cfg(args.config_file, args.opts)
    distillation_transforms(cfg)  # a bad SEMI.MODE or empty transform lists
    find_videos(args.videos)  # missing paths, unreadable videos, empty folders
    if args.boxes:
        load_boxes_file(args.boxes)
    camera_matrix(args.intrinsics)
    weights = cfg.MODEL.WEIGHTS
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS: teacher checkpoint not found: {weights}")
    settings_path = os.path.join(args.output, SETTINGS_FILE)
    if os.path.isfile(settings_path):
        with open(settings_path) as f:
            previous = json.load(f)
        if previous != run_settings(args, cfg):
            raise ValueError(
                f"{args.output} holds pseudo-labels made with other settings ({settings_path}); "
                "choose another --output or delete it"
            )
    return cfg


def main(args):
    cfg = setup_cfg(args.config_file, list(args.opts) + ["OUTPUT_DIR", args.output])
    default_setup(cfg, args)
    setup_logger(args.output, distributed_rank=comm.get_rank(), name="handobj_d2")
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: the teacher has random weights")
    if comm.is_main_process():
        write_atomically(
            os.path.join(args.output, SETTINGS_FILE),
            json.dumps(run_settings(args, cfg), indent=2),
        )
    sources = find_videos(args.videos)
    camera_K = camera_matrix(args.intrinsics)
    teacher = build_teacher(cfg, args.boxes or None, camera_K)
    generator = PseudoLabelGenerator(
        cfg, teacher, args.output, None if camera_K is None else camera_K.tolist()
    )
    summary = generator.run(sources)
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return summary


def cli(argv=None):
    """Parse, check every input before any work (a clear message and exit status 1 on bad
    input, no traceback), then launch ``main`` on --num-gpus processes per machine."""
    args = parse_args(argv)
    try:
        check_inputs(args)
        if os.path.isdir(args.output):  # before any worker starts writing
            remove_temporary_files(args.output)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (HandObjectConfigError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli()
