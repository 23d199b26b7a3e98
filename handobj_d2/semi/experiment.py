"""The paper's semi-supervised experiment on synthetic data, in one command.

    python tools/run_semi_synthetic_experiment.py --output output/semi_synthetic
    python tools/run_semi_synthetic_experiment.py --output DIR --seeds 0 1 2 3 4 \\
        --teacher-iters 2400 --student-iters 800 SEMI.FILTER.MAX_TEMPORAL_DISTANCE 0.02

Per seed (every stage is skipped when its output exists, so a rerun resumes):
1. data: a small labeled set in the synthetic "default" domain, and in the "shifted" domain
   (other backgrounds, lighting, hand shapes, skin tones; --target-domain picks another)
   unlabeled videos plus a labeled test set (the shifted tree's train split, used for testing
   only; the videos' ground truth is read only to score the pseudo-labels); with
   --shift-breakdown also test sets of the default domain and of each half of the shift;
2. teacher: the tiny model (--config-file) trained on the labeled set, or with
   --teacher-weights a given checkpoint of that model (e.g. one trained longer on a GPU on
   default-domain data), the same for every seed;
3. pseudo-labels of the shifted videos twice: "filtered" (spatial-temporal consistency filters,
   the paper) and "distillation" (no filters, predictions averaged over scale/rotation views;
   the data-distillation baseline). Hand/object boxes come from the videos' ground truth as a
   boxes file (the stand-in for the external hand-object detector the paper used, 100DOH's),
   or with --boxes detector from the teacher's own detector;
4. students: the teacher fine-tuned on labeled + pseudo-labeled data, one per pseudo-label set
   (with --control also the teacher fine-tuned as long on the labeled set alone, and a student
   on the video frames' ground truth instead of pseudo-labels: a perfect teacher's);
5. evaluation of teacher and students on the shifted test set (HandPoseEvaluator), and with
   --shift-breakdown of the teacher on the breakdown test sets.

Writes DIR/results.json (per seed and model: PA_MPJPE_mm, PA_AUC, MPJPE_mm, AUC, and the paired
per-frame differences to the teacher, for the filtered student also to the distillation student;
pseudo-label counts and their errors against the videos' ground truth; mean and sample std over
seeds, differences pooled over all seeds' frames) after every evaluation, atomically, and
DIR/results.md (the tables). Trailing KEY VALUE pairs override
the config of every stage. Layout: DIR/seed_<k>/{data/labeled, data/shifted, data/test_<domain>,
teacher, teacher_on_<domain>, pseudo_<mode>, student_<mode>, teacher_continued, student_oracle}.

Command line: tools/run_semi_synthetic_experiment.py (``main``); the shared stages (data,
training, evaluation) are handobj_d2/engine/pipeline.py's.
"""

import argparse
import glob
import json
import logging
import os
import time

import numpy as np
from detectron2.data import DatasetCatalog

from ..data.datasets.ho3d import register_ho3d
from ..data.synthetic import SYNTHETIC_DOMAINS
from ..data.synthetic.videos import (
    ground_truth_joints,
    read_video_ground_truth,
    video_ground_truth_boxes,
)
from ..data.video import find_videos
from ..engine import setup_cfg
from ..engine.pipeline import ensure_synthetic_dataset, evaluate_model, train_model
from ..evaluation.hand_evaluator import PER_FRAME_FILE
from ..evaluation.metrics import point_distances, procrustes_align
from ..evaluation.statistics import mean_std, paired_difference, pooled_difference, rank_correlation
from ..geometry import project_points
from ..utils.io import same_settings, write_atomically
from .pseudo_labels import PseudoLabelGenerator
from .teacher import build_teacher

logger = logging.getLogger(__name__)

MODES = ("distillation", "filtered")
METRICS = ("PA_MPJPE_mm", "PA_AUC", "MPJPE_mm", "AUC")
# --shift-breakdown: the teacher also on test sets of its own domain and of each half of the shift
BREAKDOWN_DOMAINS = ("default", "shifted_appearance", "shifted_shape")
# paired differences of each model's per-frame errors: to the teacher, and for the filtered
# student also to the distillation student (the paper's baseline)
PAIRED_REFERENCES = {"student_filtered": ("teacher", "student_distillation")}
FREE_SETTINGS = ("seeds", "threads", "control", "shift_breakdown")  # may change on resuming
CONSISTENCY_SCORES = ("residual_2d3d", "temporal_distance", "shape_deviation")  # filters.py


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
        choices=sorted(set(SYNTHETIC_DOMAINS) - {"default"}),
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


class Experiment:
    """The stages of one seed; each returns its result, computing it only when missing."""

    def __init__(self, args, seed):
        self.args = args
        self.seed = seed
        self.dir = os.path.join(args.output, f"seed_{seed}")
        self.labeled_root = os.path.join(self.dir, "data", "labeled")
        self.shifted_root = os.path.join(self.dir, "data", "shifted")
        self.labeled = f"semi_experiment_seed{seed}_labeled"
        self.test = f"semi_experiment_seed{seed}_shifted_test"

    def cfg(self, *opts):
        return setup_cfg(
            self.args.config_file,
            ["DATASETS.TEST", f"('{self.test}',)", "SEED", str(self.seed), *opts, *self.args.opts],
        )

    def make_data(self):
        """The labeled default-domain set and the shifted set (videos + test frames)."""
        a = self.args
        self._generate(self.labeled, self.labeled_root, "default", a.labeled_frames, videos=0)
        self._generate(self.test, self.shifted_root, a.target_domain, a.test_frames, a.videos)

    def breakdown_test(self, domain):
        """A labeled test set of --test-frames frames in ``domain`` (DIR/seed_k/data/test_<domain>);
        returns its dataset name."""
        name = f"semi_experiment_seed{self.seed}_{domain}_test"
        root = os.path.join(self.dir, "data", f"test_{domain}")
        self._generate(name, root, domain, self.args.test_frames, videos=0)
        return name

    def _generate(self, name, root, domain, frames, videos):
        """Generate (unless made) a synthetic tree of ``frames`` labeled frames and ``videos``
        videos in ``domain``, and register its frames as dataset ``name``."""
        a = self.args
        ensure_synthetic_dataset(
            root, train=frames, evaluation=0, videos=videos, frames_per_video=a.frames_per_video,
            image_size=tuple(a.image_size), seed=self.seed, domain=domain,
        )  # fmt: skip
        if name not in DatasetCatalog.list():
            register_ho3d(name, root, "train", "v2")

    def train(self, name, iters, *opts):
        """Train (or resume) a model in DIR/seed_k/<name>; returns its final weights."""
        logger.info(f"seed {self.seed}: {name}, {iters} training iterations")
        cfg = self.cfg(
            "DATASETS.TRAIN", f"('{self.labeled}',)", "OUTPUT_DIR", os.path.join(self.dir, name),
            "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"({int(0.8 * iters)},)",
            "SOLVER.CHECKPOINT_PERIOD", str(max(1, iters // 2)), "TEST.EVAL_PERIOD", "0", *opts,
        )  # fmt: skip
        return train_model(cfg, log_to_output=False)

    def evaluate(self, name, weights, test=None):
        """Hand metrics of ``weights`` on the test set ``test`` (default: the shifted one) and,
        under "per_frame", every frame's MPJPE and PA-MPJPE (mm); cached in
        <name>/test_metrics.json (the evaluator's files: <name>/inference/<test>/)."""
        path = os.path.join(self.dir, name, "test_metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
        test = test or self.test
        logger.info(f"seed {self.seed}: evaluating {name} on {test}")
        out = os.path.join(self.dir, name)
        cfg = self.cfg("MODEL.WEIGHTS", weights, "OUTPUT_DIR", out, "DATASETS.TEST", f"('{test}',)")
        results = evaluate_model(cfg, weights)[test]
        metrics = {key: results[f"hand/{key}"] for key in METRICS}
        with open(os.path.join(out, "inference", test, PER_FRAME_FILE)) as f:
            per_frame = json.load(f)
        metrics["per_frame"] = {key: per_frame[key] for key in ("MPJPE_mm", "PA_MPJPE_mm")}
        write_atomically(path, json.dumps(metrics))
        return metrics

    def pseudo_labels(self, mode, teacher_weights):
        """Pseudo-labels of the shifted videos in DIR/seed_k/pseudo_<mode>; returns their
        counts and errors against the videos' ground truth."""
        out = os.path.join(self.dir, f"pseudo_{mode}")
        if not os.path.isfile(os.path.join(out, "summary.json")):
            logger.info(f"seed {self.seed}: pseudo-labelling the shifted videos ({mode})")
            cfg = self.cfg("MODEL.WEIGHTS", teacher_weights, "SEMI.MODE", mode)
            sources = find_videos([os.path.join(self.shifted_root, "videos")])
            boxes = None
            if self.args.boxes == "ground-truth":
                boxes = os.path.join(self.dir, "data", "shifted_video_boxes.json")
                write_atomically(boxes, json.dumps(video_ground_truth_boxes(self.shifted_root)))
            PseudoLabelGenerator(cfg, build_teacher(cfg, boxes), out).run(sources)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        return {
            "frames": summary["frames"],
            "with_prediction": summary["frames_with_prediction"],
            "kept": summary["kept"],
            "failed": summary["failed"],
            **pseudo_label_errors(out, self.shifted_root),
        }

    def run(self, record):
        """All stages; ``record(part, value)`` stores each result as soon as it exists."""
        a = self.args
        self.make_data()
        teacher = a.teacher_weights or self.train("teacher", a.teacher_iters)
        teacher_metrics = self.evaluate("teacher", teacher)
        record("teacher", _without_frames(teacher_metrics))
        if a.shift_breakdown:
            for domain in BREAKDOWN_DOMAINS:
                name = f"teacher_on_{domain}"
                test = self.breakdown_test(domain)
                record(name, _without_frames(self.evaluate(name, teacher, test)))

        evaluated = {"teacher": teacher_metrics}

        def compared(name, weights):
            metrics = evaluated[name] = self.evaluate(name, weights)
            out = _without_frames(metrics)
            for reference in PAIRED_REFERENCES.get(name, ("teacher",)):
                if reference in evaluated:
                    out.update(frame_differences(metrics, evaluated[reference], reference))
            return out

        for mode in MODES:
            pseudo = self.pseudo_labels(mode, teacher)
            record(f"pseudo_{mode}", pseudo)
            name = f"student_{mode}"
            if pseudo["kept"] == 0:
                logger.warning(f"seed {self.seed}: no {mode} pseudo-labels kept; no {name}")
                record(name, None)
                continue
            labels = os.path.abspath(os.path.join(self.dir, f"pseudo_{mode}", "pseudo_labels.json"))
            weights = self.train(
                name, a.student_iters, "MODEL.WEIGHTS", teacher,
                "SEMI.PSEUDO_LABEL_FILES", f"('{labels}',)",
            )  # fmt: skip
            record(name, compared(name, weights))
        if a.control:
            weights = self.train("teacher_continued", a.student_iters, "MODEL.WEIGHTS", teacher)
            record("teacher_continued", compared("teacher_continued", weights))
            labels = self.oracle_labels()
            if labels is None:
                record("student_oracle", None)
                return
            weights = self.train(
                "student_oracle", a.student_iters, "MODEL.WEIGHTS", teacher,
                "SEMI.PSEUDO_LABEL_FILES", f"('{labels}',)",
            )  # fmt: skip
            record("student_oracle", compared("student_oracle", weights))

    def oracle_labels(self):
        """The distillation pseudo-labels (every frame with a pair) with the teacher's 2D and 3D
        joints replaced by the videos' ground truth: the pseudo-labels of a perfect teacher.
        None when no frame had a pair."""
        path = os.path.join(self.dir, "oracle_labels.json")
        if not os.path.isfile(path):
            folder = os.path.join(self.dir, "pseudo_distillation")
            with open(os.path.join(folder, "pseudo_labels.json")) as f:
                records = json.load(f)
            for record in records:
                video, index = record["image_id"].rsplit("/", 1)
                meta = read_video_ground_truth(self.shifted_root, video)[int(index)]
                joints = ground_truth_joints(meta)
                hand = record["annotations"][0]
                hand["joints2d"] = project_points(joints, np.asarray(meta["camMat"])).tolist()
                hand["joints3d"] = (joints - joints[:1]).tolist()
                record["file_name"] = os.path.abspath(os.path.join(folder, record["file_name"]))
            write_atomically(path, json.dumps(records))
        with open(path) as f:
            return path if json.load(f) else None


def pseudo_label_errors(out, shifted_root):
    """Root-relative and Procrustes-aligned joint errors (mm) of the teacher's predictions
    against the videos' ground truth, over the kept frames and over all predicted frames; and,
    where the filters scored the frames, Spearman's rank correlation of each consistency score
    with either error over all predicted frames (does the score find the bad labels?)."""
    errors = {"kept": [], "all": []}
    scores = {name: [] for name in CONSISTENCY_SCORES}
    for path in sorted(glob.glob(os.path.join(out, "videos", "*.json"))):
        with open(path) as f:
            result = json.load(f)
        truth = read_video_ground_truth(shifted_root, result["video"])
        for frame in result["frames"]:
            if not frame["predicted"]:
                continue
            gt = ground_truth_joints(truth[frame["frame_index"]])
            gt = gt - gt[:1]
            pred = np.asarray(frame["prediction"]["joints3d"])
            pair = (point_distances(pred, gt).mean(), point_distances(
                procrustes_align(pred[None], gt[None])[0], gt).mean())  # fmt: skip
            errors["all"].append(pair)
            if frame["kept"]:
                errors["kept"].append(pair)
            for name in CONSISTENCY_SCORES:
                scores[name].append(frame.get(name, np.nan))
    out = {}
    for part, values in errors.items():
        values = np.array(values).reshape(-1, 2) * 1000
        mean = values.mean(0) if len(values) else [float("nan")] * 2
        out[f"MPJPE_mm_{part}"], out[f"PA_MPJPE_mm_{part}"] = float(mean[0]), float(mean[1])
    per_frame = np.array(errors["all"]).reshape(-1, 2)
    for name, values in scores.items():
        # None: the temporal score needs neighbours; the distillation mode scores nothing
        values = np.array(values, dtype=float)
        for column, error in enumerate(("MPJPE", "PA_MPJPE")):
            rho = rank_correlation(values, per_frame[:, column])
            if rho is not None:
                out[f"spearman_{name}_vs_{error}"] = rho
    return out


def frame_differences(metrics, reference, reference_name="teacher"):
    """A model minus a reference model on the same test frames, from both ``evaluate`` results:
    {"<metric>_vs_<reference_name>": ``paired_difference``} for MPJPE and PA-MPJPE (mm). Empty
    when either lacks per-frame errors (a result of an older version)."""
    if "per_frame" not in metrics or "per_frame" not in reference:
        return {}
    return {
        f"{metric}_vs_{reference_name}": paired_difference(
            metrics["per_frame"][metric], reference["per_frame"][metric]
        )
        for metric in ("MPJPE_mm", "PA_MPJPE_mm")
    }


def _without_frames(metrics):
    return {key: value for key, value in metrics.items() if key != "per_frame"}


def same_experiment(previous, settings):
    """Whether the settings of a results.json (``previous``) and ``settings`` (the arguments but
    --output, as JSON) describe one experiment: equal but for FREE_SETTINGS, an option missing
    from ``previous`` (added to the tool since) counting with its default."""
    defaults = {k: v for k, v in vars(parse_args(["--output", "-"])).items() if k != "output"}
    return same_settings(previous, settings, ignore=FREE_SETTINGS, defaults=defaults)


def summarize(seeds):
    """Mean, sample std and count over seeds of every model's metrics; its paired differences to
    other models pooled over all seeds' frames (``pooled_difference``)."""
    summary = {}
    models = sorted({m for s in seeds.values() for m in s if not m.startswith("pseudo_")})
    for model in models:
        rows = [s[model] for s in seeds.values() if s.get(model)]
        if not rows:
            summary[model] = None
            continue
        summary[model] = {metric: mean_std([r[metric] for r in rows]) for metric in METRICS}
        for key in sorted({key for r in rows for key in r if "_vs_" in key}):
            summary[model][key] = pooled_difference([r[key] for r in rows if key in r])
    return summary


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
