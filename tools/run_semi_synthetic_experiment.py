#!/usr/bin/env python
"""The paper's semi-supervised experiment on synthetic data, in one command.

    python tools/run_semi_synthetic_experiment.py --output output/semi_synthetic
    python tools/run_semi_synthetic_experiment.py --output DIR --seeds 0 1 2 3 4 \\
        --teacher-iters 2400 --student-iters 800 SEMI.FILTER.MAX_TEMPORAL_DISTANCE 0.02

The stages of each seed are handobj_d2/semi/experiment.py's (data, teacher, pseudo-labels
filtered and by data distillation, students, evaluation); every stage is skipped when its output
exists, so a rerun resumes (with the same settings but FREE_SETTINGS).

Writes DIR/results.json (per seed and model: PA_MPJPE_mm, PA_AUC, MPJPE_mm, AUC, and the paired
per-frame differences to the teacher, for the filtered student also to the distillation student;
pseudo-label counts and their errors against the videos' ground truth; mean and sample std over
seeds, differences pooled over all seeds' frames) after every evaluation, atomically, and
DIR/results.md (the tables). Trailing KEY VALUE pairs override the config of every stage.
"""

import argparse
import json
import logging
import os
import sys
import time

import torch
from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.data.synthetic import SYNTHETIC_DOMAIN_REGISTRY
from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.semi.experiment import (
    BREAKDOWN_DOMAINS,
    METRICS,
    MODES,
    Experiment,
    summarize,
)
from handobj_d2.utils.io import same_settings, write_atomically

logger = logging.getLogger("handobj_d2.semi_experiment")

FREE_SETTINGS = ("seeds", "threads", "control", "shift_breakdown")  # may change on resuming


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--output", required=True, help="experiment folder (resumed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--config-file",
        default="configs/synthetic/semi_student.yaml",
        help="model and training config of teacher and students",
    )
    parser.add_argument("--teacher-iters", type=int, default=1200)
    parser.add_argument(
        "--teacher-weights",
        help="checkpoint of --config-file's model to use as the teacher of every seed instead of "
        "training one on the labeled set (--teacher-iters is then unused)",
    )
    parser.add_argument("--student-iters", type=int, default=400)
    parser.add_argument(
        "--labeled-frames", type=int, default=400, help="default-domain labeled training frames"
    )
    parser.add_argument(
        "--test-frames", type=int, default=48, help="shifted-domain labeled test frames"
    )
    parser.add_argument("--videos", type=int, default=8, help="shifted-domain unlabeled videos")
    parser.add_argument("--frames-per-video", type=int, default=16)
    parser.add_argument(
        "--image-size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"), help="pixels"
    )
    parser.add_argument(
        "--boxes",
        choices=("ground-truth", "detector"),
        default="ground-truth",
        help="hand/object boxes of the video frames: from the videos' ground truth (a stand-in "
        "for an external hand-object detector, as the paper's 100DOH) or the teacher's detector",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default, one per core); 1 is faster on a machine "
        "shared with other jobs",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="also train, as long as the students, the teacher on the labeled set alone "
        "(teacher_continued: a gain from pseudo-labels or from more iterations?) and a student on "
        "ground-truth labels of the same video frames (student_oracle: a perfect teacher)",
    )
    parser.add_argument(
        "--target-domain",
        default="shifted",
        choices=sorted({name for name, _ in SYNTHETIC_DOMAIN_REGISTRY} - {"default"}),
        help="synthetic domain of the unlabeled videos and the test set (the labeled set is "
        "always 'default'; handobj_d2/data/synthetic/domains.py)",
    )
    parser.add_argument(
        "--shift-breakdown",
        action="store_true",
        help="also evaluate the teacher on --test-frames frames of its own domain and of each half "
        "of the shift (shifted_appearance: the shifted scenes, lights and skin; shifted_shape: "
        "the shifted hand shapes): what each half costs it (teacher_on_<domain>)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides for every stage: KEY VALUE ...")  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("teacher_iters", "student_iters", "labeled_frames", "test_frames", "videos"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.frames_per_video < 3:
        parser.error("--frames-per-video must be at least 3 (temporal filter)")
    if args.teacher_weights:
        if not os.path.isfile(args.teacher_weights):
            parser.error(f"--teacher-weights: no such file: {args.teacher_weights}")
        args.teacher_weights = os.path.abspath(args.teacher_weights)
    return args



def same_experiment(previous, settings):
    """Whether the settings of a results.json (``previous``) and ``settings`` (the arguments but
    --output, as JSON) describe one experiment: equal but for FREE_SETTINGS, an option missing
    from ``previous`` (added to the tool since) counting with its default."""
    defaults = {k: v for k, v in vars(parse_args(["--output", "-"])).items() if k != "output"}
    return same_settings(previous, settings, ignore=FREE_SETTINGS, defaults=defaults)



def markdown_table(results):
    """The results as Markdown tables: mean +- sample std over seeds and the per-seed values; for
    the students and controls also their paired PA-MPJPE difference to the teacher over all
    seeds' test frames +- its standard error (per seed in brackets), and the filtered student's
    to the distillation student below the table."""
    seeds = results["seeds"]
    lines = [
        "| model (shifted-domain test set) | PA-MPJPE (mm) | PA-AUC 0-5 cm (%) | MPJPE (mm) | "
        "AUC 0-5 cm (%) | per-seed PA-MPJPE (mm) | PA-MPJPE - teacher, paired (mm) |",
        "|---|---|---|---|---|---|---|",
    ]

    def difference(model, reference):
        key = f"PA_MPJPE_mm_vs_{reference}"
        pooled = results["summary"][model].get(key)
        if pooled is None:
            return "-"
        per_seed = [(seeds[s].get(model) or {}).get(key) for s in seeds]
        per_seed = ", ".join(f"{d['mean']:+.2f}" if d else "-" for d in per_seed)
        return f"{pooled['mean']:+.3f} ± {pooled['se']:.3f} ({per_seed})"

    def row(label, model, versus=None):  # versus: the column against the teacher (None: none)
        stats = results["summary"][model]
        cells = [f"{stats[m]['mean']:.2f} ± {stats[m]['std']:.2f}" for m in METRICS]
        per_seed = [seeds[s].get(model) or {} for s in seeds]
        cells.append(", ".join(f"{r['PA_MPJPE_mm']:.2f}" if r else "-" for r in per_seed))
        if versus is not None:
            cells.append(difference(model, "teacher") if versus else "-")
        return f"| {label} | " + " | ".join(cells) + " |"

    breakdown = [f"teacher_on_{domain}" for domain in BREAKDOWN_DOMAINS]
    for model, stats in results["summary"].items():
        if stats is not None and model not in breakdown:
            lines.append(row(model, model, versus=model != "teacher"))
    if results["summary"].get("student_filtered"):
        versus = difference("student_filtered", "student_distillation")
        lines += ["", f"Filtered minus distillation student, paired PA-MPJPE (mm): {versus}"]
    if any(results["summary"].get(model) for model in breakdown):
        lines += ["", "| teacher, test set of domain | PA-MPJPE (mm) | PA-AUC 0-5 cm (%) | "
                  "MPJPE (mm) | AUC 0-5 cm (%) | per-seed PA-MPJPE (mm) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        target = results["settings"]["target_domain"]
        for domain, model in zip(BREAKDOWN_DOMAINS + (target,), breakdown + ["teacher"]):
            if results["summary"].get(model):
                lines.append(row(domain, model))
    lines += ["", "| pseudo-labels | frames | with a pair | kept | PA-MPJPE kept (mm) | "
              "PA-MPJPE all predicted (mm) | Spearman, 2D-3D residual vs MPJPE / PA-MPJPE |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for mode in MODES:
        for seed, parts in seeds.items():
            p = parts.get(f"pseudo_{mode}")
            if p:
                rho = [p.get(f"spearman_residual_2d3d_vs_{e}") for e in ("MPJPE", "PA_MPJPE")]
                rho = "-" if None in rho else f"{rho[0]:+.2f} / {rho[1]:+.2f}"
                lines.append(
                    f"| {mode}, seed {seed} | {p['frames']} | {p['with_prediction']} | "
                    f"{p['kept']} | {p['PA_MPJPE_mm_kept']:.2f} | {p['PA_MPJPE_mm_all']:.2f} | "
                    f"{rho} |"
                )
    return "\n".join(lines) + "\n"


def load_results(args):
    """The results of the experiment ``args`` (``parse_args``) so far: those in
    args.output/results.json of the seeds asked for, when it holds the same experiment
    (``same_experiment``; else a ValueError), or none."""
    path = os.path.join(args.output, "results.json")
    settings = json.loads(json.dumps({k: v for k, v in vars(args).items() if k != "output"}))
    results = {"settings": settings, "seeds": {}}
    if os.path.isfile(path):  # resume: finished stages are reused, so the settings must match
        with open(path) as f:
            previous = json.load(f)
        if not same_experiment(previous["settings"], settings):
            raise ValueError(
                f"{args.output} holds an experiment with other settings "
                f"({previous['settings']}); choose another --output"
            )
        results["seeds"] = {s: v for s, v in previous["seeds"].items() if int(s) in args.seeds}
    return results


def run(args, results):
    """Every seed of the experiment ``args`` on top of ``results`` (``load_results``), in
    args.output; results.json and results.md are rewritten, atomically, after every stage."""

    def save():
        results["summary"] = summarize(results["seeds"])
        write_atomically(os.path.join(args.output, "results.json"), json.dumps(results, indent=2))
        write_atomically(os.path.join(args.output, "results.md"), markdown_table(results))

    start = time.perf_counter()
    for seed in args.seeds:
        parts = results["seeds"].setdefault(str(seed), {})

        def record(part, value, parts=parts):
            parts[part] = value
            save()

        Experiment(args, seed).run(record)
        logger.info(f"seed {seed} done after {(time.perf_counter() - start) / 60:.1f} min")
    save()
    return results


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for name in ("detectron2", "handobj_d2"):
        setup_logger(os.path.join(args.output, "log.txt"), name=name, abbrev_name=name[:4])
    try:
        setup_cfg(args.config_file, args.opts)
        results = load_results(args)
    except (HandObjectConfigError, ValueError) as e:
        sys.exit(f"error: {e}")
    run(args, results)
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
