#!/usr/bin/env python
"""The project's main job on its embedded default (``make demo``), on CPU in minutes:

1. make the synthetic HO3D-format set under $HANDOBJ_DATASETS/synthetic if it is not there;
2. evaluate the untrained (randomly initialised) tiny model on synthetic_eval;
3. fine-tune the tiny model (configs/synthetic/handobj_tiny_fast.yaml) on synthetic_train for
   a time budget (as many iterations as this machine runs in it, measured first), starting
   from DEMO_CHECKPOINT (the same model trained by ``make demo-checkpoint`` on a synthetic set
   of its own; ``--teacher-init ""``: from random weights), evaluate it;
4. pseudo-label the synthetic videos with it (spatial-temporal filters) and self-train a
   student on labeled + pseudo-labeled frames (a budget too), evaluate it;
5. run the demo (overlays, meshes, JSON) on evaluation images, with their labelled hand and
   object boxes as in the evaluation (``--demo-boxes detected``: the model's own detector);
6. write <output>/summary.json: the metrics of every stage, the iterations and seconds of each
   training, the seconds of every stage and the path of every artefact.

Every stage is logged as it starts and ends with the job's ETA. Rerunning resumes: finished
stages are read back, training continues from its last checkpoint with the same schedule.
``--iters N`` / ``--student-iters N`` train for fixed iteration counts instead (reproducible
across machines).

    python tools/run_demo.py --output output/demo
"""

import argparse
import json
import logging
import os
import sys
import time

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.constants import OBJECT_CLASS
from handobj_d2.data.video import find_videos
from handobj_d2.engine import HandObjectPredictor, setup_cfg
from handobj_d2.engine.budget import budget_schedule, with_iterations
from handobj_d2.engine.demo import Demo
from handobj_d2.engine.pipeline import ensure_synthetic_dataset, evaluate_model, train_model
from handobj_d2.semi.pseudo_labels import PseudoLabelGenerator
from handobj_d2.semi.teacher import build_teacher
from handobj_d2.utils.io import write_atomically
from handobj_d2.utils.progress import StageProgress

logger = logging.getLogger("handobj_d2.run_demo")

CONFIG = "configs/synthetic/handobj_tiny_fast.yaml"
# The teacher's starting weights: CONFIG trained for an hour on a 2-core CPU on 2000 synthetic
# frames of seed 1 (make demo's set is seed 0), by tools/make_demo_checkpoint.py.
DEMO_CHECKPOINT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "checkpoints",
    "handobj_tiny_fast_synthetic.pth",
)
# Metrics shown side by side for every stage.
HEADLINE = ("hand/MPJPE_mm", "hand/PA_MPJPE_mm", "hand/AUC", "hand/joints2d_px",
            "object/ADD0.1D_seen", "object/REP5px")  # fmt: skip
# Planned seconds of the stages that are not trainings, for the ETA: per labeled and per video
# frame made, per evaluated / pseudo-labeled frame, per demo image, plus a fixed part (model
# and dataset set-up); measured on the project's 2-core machine.
SECONDS_PER_LABELED_FRAME = 0.12
SECONDS_PER_VIDEO_FRAME = 0.04
SECONDS_PER_EVALUATED_FRAME = 0.15
SECONDS_PER_PSEUDO_LABELED_FRAME = 0.2
SECONDS_PER_DEMO_IMAGE = 1.0
SETUP_SECONDS = 5.0
TRAINING_RECORD = "training.json"  # in each training's OUTPUT_DIR: iterations and seconds


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


def _stage_cfg(args, output_dir, extra=()):
    opts = ["OUTPUT_DIR", output_dir, *extra, *args.opts]
    return setup_cfg(args.config_file, [str(o) for o in opts])


def _headline(results):
    metrics = next(iter(results.values()))
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def _train(cfg, iterations, budget_seconds):
    """Train ``cfg`` for ``iterations`` (> 0) or for ``budget_seconds``; returns the final
    weights and the record of what was done (iterations, seconds, the schedule's choice), also
    kept in <OUTPUT_DIR>/training.json, where a rerun reads it back."""
    path = os.path.join(cfg.OUTPUT_DIR, TRAINING_RECORD)
    start = time.perf_counter()
    if iterations > 0:
        cfg, record = with_iterations(cfg, iterations), {"iterations": iterations}
    else:
        cfg, record = budget_schedule(cfg, budget_seconds, minimum=10)
    weights = train_model(cfg, log_to_output=False)
    if os.path.isfile(path):
        with open(path) as f:
            return weights, json.load(f)
    seconds = time.perf_counter() - start
    record = dict(record, seconds=round(seconds, 1),
                  seconds_per_iteration=round(seconds / cfg.SOLVER.MAX_ITER, 4))  # fmt: skip
    write_atomically(path, json.dumps(record, indent=2))
    return weights, record


def _train_and_evaluate(progress, role, cfg, iterations, budget_seconds):
    """The stages "<role>: training" (``_train``) and "<role>: evaluation" (into
    <OUTPUT_DIR>/evaluation.json); returns the weights, the training record and the headline
    metrics."""
    with progress.stage(f"{role}: training"):
        weights, record = _train(cfg, iterations, budget_seconds)
    with progress.stage(f"{role}: evaluation"):
        results = evaluate_model(cfg, weights, os.path.join(cfg.OUTPUT_DIR, "evaluation.json"))
    return weights, record, _headline(results)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.teacher_init and not os.path.isfile(args.teacher_init):
        raise SystemExit(f"--teacher-init {args.teacher_init}: no such file (make demo-checkpoint)")
    out = os.path.abspath(args.output)
    for name in ("detectron2", "handobj_d2"):  # once: the console and <output>/log.txt
        setup_logger(output=out, name=name)
    data_root = os.path.join(os.environ.get("HANDOBJ_DATASETS", "datasets"), "synthetic")
    summary = {"stages": {}, "training": {}, "artefacts": {}}
    video_frames = args.videos * args.frames_per_video
    evaluation = SETUP_SECONDS + SECONDS_PER_EVALUATED_FRAME * args.eval
    progress = StageProgress([
        ("synthetic data", SECONDS_PER_LABELED_FRAME * (args.train + args.eval)
         + SECONDS_PER_VIDEO_FRAME * video_frames),
        ("untrained model: evaluation", evaluation),
        ("teacher: training", args.teacher_seconds),
        ("teacher: evaluation", evaluation),
        ("pseudo-labels", SETUP_SECONDS + SECONDS_PER_PSEUDO_LABELED_FRAME * video_frames),
        ("student: training", args.student_seconds),
        ("student: evaluation", evaluation),
        ("demo images", SETUP_SECONDS + SECONDS_PER_DEMO_IMAGE * args.demo_images),
    ])  # fmt: skip

    with progress.stage("synthetic data"):
        ensure_synthetic_dataset(data_root, train=args.train, evaluation=args.eval,
                                 videos=args.videos, frames_per_video=args.frames_per_video,
                                 image_size=tuple(args.image_size), seed=0)  # fmt: skip
    summary["artefacts"]["synthetic_dataset"] = os.path.abspath(data_root)

    teacher_cfg = _stage_cfg(
        args, os.path.join(out, "teacher"), ["MODEL.WEIGHTS", args.teacher_init]
    )
    with progress.stage("untrained model: evaluation"):
        untrained = evaluate_model(teacher_cfg, "",
                                   os.path.join(out, "untrained", "evaluation.json"))  # fmt: skip
    summary["stages"]["untrained"] = _headline(untrained)

    teacher_weights, summary["training"]["teacher"], summary["stages"]["trained"] = (
        _train_and_evaluate(progress, "teacher", teacher_cfg, args.iters, args.teacher_seconds)
    )
    summary["training"]["teacher"]["initial_weights"] = args.teacher_init or "random"
    summary["artefacts"]["teacher_weights"] = teacher_weights

    pseudo_dir = os.path.join(out, "pseudo_labels")
    with progress.stage("pseudo-labels"):
        teacher_predictor_cfg = _stage_cfg(args, pseudo_dir, ["MODEL.WEIGHTS", teacher_weights])
        generator = PseudoLabelGenerator(
            teacher_predictor_cfg, build_teacher(teacher_predictor_cfg), pseudo_dir
        )
        pseudo_summary = generator.run(find_videos([os.path.join(data_root, "video_frames")]))
    pseudo_json = os.path.join(pseudo_dir, "pseudo_labels.json")
    summary["stages"]["pseudo_labels"] = pseudo_summary
    summary["artefacts"].update(
        pseudo_labels=pseudo_json, pseudo_label_scores=os.path.join(pseudo_dir, "scores.csv")
    )
    demo_weights = teacher_weights
    if pseudo_summary["kept"]:
        student_cfg = _stage_cfg(args, os.path.join(out, "student"),
                                 ["MODEL.WEIGHTS", teacher_weights,
                                  "SEMI.PSEUDO_LABEL_FILES", (pseudo_json,)])  # fmt: skip
        demo_weights, summary["training"]["student"], summary["stages"]["self_trained"] = (
            _train_and_evaluate(
                progress, "student", student_cfg, args.student_iters, args.student_seconds
            )
        )
        summary["artefacts"]["student_weights"] = demo_weights
    else:
        logger.warning("No frame passed the pseudo-label filters: self-training skipped")
        summary["stages"]["self_trained"] = "skipped: no frame passed the pseudo-label filters"
        for name in ("student: training", "student: evaluation"):
            progress.replan(name, 0.0)

    demo_dir = os.path.join(out, "demo_images")
    with progress.stage("demo images"):
        records = DatasetCatalog.get(teacher_cfg.DATASETS.TEST[0])[: args.demo_images]
        predictor = HandObjectPredictor(_stage_cfg(args, demo_dir, ["MODEL.WEIGHTS", demo_weights]))
        demo = Demo(predictor, demo_dir)
        for record in records:
            name = record["image_id"].replace("/", "_")
            obj = next(a for a in record["annotations"] if a["category_id"] == OBJECT_CLASS)
            hand = next(a for a in record["annotations"] if a["category_id"] != OBJECT_CLASS)
            boxes = (hand["bbox"], obj["bbox"]) if args.demo_boxes == "given" else None
            demo.image(record["file_name"], name, record["camera_K"], obj["object_name"], boxes)
        write_atomically(os.path.join(demo_dir, "predictions.json"), json.dumps(demo.entries))
    summary["artefacts"]["demo_images"] = demo_dir
    summary["stage_seconds"] = {name: round(s, 1) for name, s in progress.spent.items()}
    summary["total_seconds"] = round(sum(progress.spent.values()), 1)

    summary_path = os.path.join(out, "summary.json")
    write_atomically(summary_path, json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"\nEverything is in {out}; summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
