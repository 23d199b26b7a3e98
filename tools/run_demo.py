#!/usr/bin/env python
"""The project's main job on its embedded default (``make demo``), on CPU in minutes:

1. make the synthetic HO3D-format set under $HANDOBJ_DATASETS/synthetic if it is not there;
2. evaluate the untrained (randomly initialised) tiny model on synthetic_eval;
3. train the tiny model (configs/synthetic/handobj_tiny.yaml) on synthetic_train, evaluate it;
4. pseudo-label the synthetic videos with it (spatial-temporal filters) and self-train a
   student on labeled + pseudo-labeled frames, evaluate it;
5. run the demo (overlays, meshes, JSON) on evaluation images;
6. write <output>/summary.json: the metrics of every stage and the path of every artefact.

Rerunning resumes: finished stages are read back, training continues from its last checkpoint.

    python tools/run_demo.py --output output/demo
"""

import argparse
import json
import logging
import os
import sys

from detectron2.data import DatasetCatalog

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.constants import OBJECT_CLASS
from handobj_d2.data.video import find_videos
from handobj_d2.engine import HandObjectPredictor, setup_cfg
from handobj_d2.engine.demo import Demo
from handobj_d2.engine.pipeline import ensure_synthetic_dataset, evaluate_model, train_model
from handobj_d2.semi.pseudo_labels import PseudoLabelGenerator
from handobj_d2.semi.teacher import build_teacher
from handobj_d2.utils.io import write_atomically

logger = logging.getLogger("handobj_d2.run_demo")

CONFIG = "configs/synthetic/handobj_tiny.yaml"
# Metrics shown side by side for every stage.
HEADLINE = ("hand/MPJPE_mm", "hand/PA_MPJPE_mm", "hand/AUC", "hand/joints2d_px",
            "object/ADD0.1D_seen", "object/REP5px")  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--train", type=int, default=800, help="labeled synthetic frames")
    parser.add_argument("--eval", type=int, default=32, help="evaluation frames")
    parser.add_argument("--videos", type=int, default=4, help="unlabeled videos")
    parser.add_argument("--frames-per-video", type=int, default=24)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"))
    parser.add_argument("--iters", type=int, default=2400, help="teacher training iterations")
    parser.add_argument("--student-iters", type=int, default=300)
    parser.add_argument("--demo-images", type=int, default=4)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def _stage_cfg(args, output_dir, iters, extra=()):
    steps = (int(iters * 0.75),)
    opts = ["OUTPUT_DIR", output_dir, "SOLVER.MAX_ITER", iters, "SOLVER.STEPS", steps,
            "SOLVER.CHECKPOINT_PERIOD", max(iters // 4, 1), *extra, *args.opts]  # fmt: skip
    return setup_cfg(CONFIG, [str(o) for o in opts])


def _headline(results):
    metrics = next(iter(results.values()))
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = os.path.abspath(args.output)
    data_root = os.path.join(os.environ.get("HANDOBJ_DATASETS", "datasets"), "synthetic")
    summary = {"stages": {}, "artefacts": {}}

    logger.info("1/5 synthetic data")
    ensure_synthetic_dataset(data_root, train=args.train, evaluation=args.eval,
                             videos=args.videos, frames_per_video=args.frames_per_video,
                             image_size=tuple(args.image_size), seed=0)  # fmt: skip
    summary["artefacts"]["synthetic_dataset"] = os.path.abspath(data_root)

    logger.info("2/5 untrained model")
    teacher_cfg = _stage_cfg(args, os.path.join(out, "teacher"), args.iters)
    untrained = evaluate_model(teacher_cfg, "", os.path.join(out, "untrained", "evaluation.json"))
    summary["stages"]["untrained"] = _headline(untrained)

    logger.info("3/5 training the teacher")
    teacher_weights = train_model(teacher_cfg)
    teacher = evaluate_model(teacher_cfg, teacher_weights,
                             os.path.join(out, "teacher", "evaluation.json"))  # fmt: skip
    summary["stages"]["trained"] = _headline(teacher)
    summary["artefacts"]["teacher_weights"] = teacher_weights

    logger.info("4/5 pseudo-labels and self-training")
    pseudo_dir = os.path.join(out, "pseudo_labels")
    teacher_predictor_cfg = _stage_cfg(args, pseudo_dir, args.iters,
                                       ["MODEL.WEIGHTS", teacher_weights])  # fmt: skip
    generator = PseudoLabelGenerator(
        teacher_predictor_cfg, build_teacher(teacher_predictor_cfg), pseudo_dir
    )
    videos = find_videos([os.path.join(data_root, "video_frames")])
    pseudo_summary = generator.run(videos)
    pseudo_json = os.path.join(pseudo_dir, "pseudo_labels.json")
    summary["stages"]["pseudo_labels"] = pseudo_summary
    summary["artefacts"].update(
        pseudo_labels=pseudo_json, pseudo_label_scores=os.path.join(pseudo_dir, "scores.csv")
    )
    demo_weights = teacher_weights
    if pseudo_summary["kept"]:
        student_cfg = _stage_cfg(args, os.path.join(out, "student"), args.student_iters,
                                 ["MODEL.WEIGHTS", teacher_weights,
                                  "SEMI.PSEUDO_LABEL_FILES", (pseudo_json,)])  # fmt: skip
        demo_weights = train_model(student_cfg)
        student = evaluate_model(student_cfg, demo_weights,
                                 os.path.join(out, "student", "evaluation.json"))  # fmt: skip
        summary["stages"]["self_trained"] = _headline(student)
        summary["artefacts"]["student_weights"] = demo_weights
    else:
        logger.warning("No frame passed the pseudo-label filters: self-training skipped")
        summary["stages"]["self_trained"] = "skipped: no frame passed the pseudo-label filters"

    logger.info("5/5 demo on evaluation images")
    demo_dir = os.path.join(out, "demo_images")
    records = DatasetCatalog.get(teacher_cfg.DATASETS.TEST[0])[: args.demo_images]
    demo = Demo(HandObjectPredictor(_stage_cfg(args, demo_dir, args.iters,
                                               ["MODEL.WEIGHTS", demo_weights])), demo_dir)  # fmt: skip
    for record in records:
        name = record["image_id"].replace("/", "_")
        obj = next(a for a in record["annotations"] if a["category_id"] == OBJECT_CLASS)
        demo.image(record["file_name"], name, record["camera_K"], obj["object_name"])
    write_atomically(os.path.join(demo_dir, "predictions.json"), json.dumps(demo.entries))
    summary["artefacts"]["demo_images"] = demo_dir

    summary_path = os.path.join(out, "summary.json")
    write_atomically(summary_path, json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"\nEverything is in {out}; summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
