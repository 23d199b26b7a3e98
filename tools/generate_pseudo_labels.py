#!/usr/bin/env python
"""Pseudo-label unlabeled videos with a trained teacher (steps 2-4 of self-training).

    python tools/generate_pseudo_labels.py --config-file configs/synthetic/handobj_tiny.yaml \\
        --videos datasets/synthetic_shifted/videos --output output/pseudo_filtered \\
        MODEL.WEIGHTS output/synthetic_tiny/model_final.pth
    # the data-distillation baseline, boxes from a file, known intrinsics, 8 GPUs
    python tools/generate_pseudo_labels.py --config-file CFG --videos clips/ --output OUT \\
        --boxes boxes.json --intrinsics 615 615 320 240 --num-gpus 8 \\
        MODEL.WEIGHTS teacher.pth SEMI.MODE distillation
    # 2 CPU processes (gloo); the output equals a single process's
    python tools/generate_pseudo_labels.py --config-file CFG --videos clips/ --output OUT \\
        --num-processes 2 --dist-url auto MODEL.DEVICE cpu MODEL.WEIGHTS teacher.pth

--videos takes video files, frame folders and directories holding them. Writes, in --output,
pseudo_labels.json (train a student with SEMI.PSEUDO_LABEL_FILES), scores.csv (every frame's
consistency scores and filter verdicts), summary.json (frames removed by each filter) and
per-video results (handobj_d2/semi/pseudo_labels.py). Rerunning the same command after an
interruption skips the finished videos. Boxes file format: handobj_d2/semi/teacher.py.
Videos are shared out among the processes. Multi-machine: add --num-machines N --machine-rank R
--dist-url tcp://HOST:PORT. Without MODEL.WEIGHTS every process has its own random teacher.
"""

import argparse
import json
import logging
import os
import sys

from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.data.video import find_videos
from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.engine.launch import add_launch_arguments, launch
from handobj_d2.geometry import intrinsics_matrix
from handobj_d2.semi.generation import SETTINGS_FILE, check_inputs, run_settings
from handobj_d2.semi.pseudo_labels import PseudoLabelGenerator
from handobj_d2.semi.teacher import build_teacher
from handobj_d2.utils.io import remove_temporary_files, write_atomically

logger = logging.getLogger("handobj_d2.generate_pseudo_labels")


def parse_args(argv=None):
    parser = add_launch_arguments(default_argument_parser(epilog=__doc__))
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


def main(args):
    cfg = setup_cfg(args.config_file, list(args.opts) + ["OUTPUT_DIR", args.output])
    default_setup(cfg, args)
    setup_logger(args.output, distributed_rank=comm.get_rank(), name="handobj_d2")
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: the teacher has random weights")
    if comm.is_main_process():
        write_atomically(
            os.path.join(args.output, SETTINGS_FILE),
            json.dumps(run_settings(cfg, args.config_file, args.boxes, args.intrinsics), indent=2),
        )
    sources = find_videos(args.videos)
    camera_K = None if args.intrinsics is None else intrinsics_matrix(args.intrinsics)
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
        cfg = setup_cfg(args.config_file, args.opts)
        check_inputs(cfg, args.videos, args.output, args.config_file, args.boxes, args.intrinsics)
        if os.path.isdir(args.output):  # before any worker starts writing
            remove_temporary_files(args.output)
        launch(
            main,
            args.num_gpus,
            cfg.MODEL.DEVICE,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (HandObjectConfigError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli()
