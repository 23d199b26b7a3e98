"""The stages of the paper's semi-supervised experiment on synthetic data, per seed, and the
scores of its results (the command line, its options, resuming and Markdown report:
tools/run_semi_synthetic_experiment.py).

Per seed (every stage is skipped when its output exists, so a rerun resumes):
1. data: a small labeled set in the synthetic "default" domain, and in the target domain
   ("shifted": other backgrounds, lighting, hand shapes, skin tones) unlabeled videos plus a
   labeled test set (the shifted tree's train split, used for testing only; the videos' ground
   truth is read only to score the pseudo-labels); optionally test sets of the default domain
   and of each half of the shift (BREAKDOWN_DOMAINS);
2. teacher: the model trained on the labeled set, or a given checkpoint of that model;
3. pseudo-labels of the shifted videos twice: "filtered" (spatial-temporal consistency filters,
   the paper) and "distillation" (no filters, predictions averaged over scale/rotation views;
   the data-distillation baseline). Hand/object boxes come from the videos' ground truth as a
   boxes file (the stand-in for the external hand-object detector the paper used, 100DOH's),
   or from the teacher's own detector;
4. students: the teacher fine-tuned on labeled + pseudo-labeled data, one per pseudo-label set
   (optionally the controls: the teacher fine-tuned as long on the labeled set alone, and a
   student on the video frames' ground truth instead of pseudo-labels: a perfect teacher's);
5. evaluation of teacher and students on the shifted test set (HandPoseEvaluator).

Layout: DIR/seed_<k>/{data/labeled, data/shifted, data/test_<domain>, teacher,
teacher_on_<domain>, pseudo_<mode>, student_<mode>, teacher_continued, student_oracle}. The
shared stages (data, training, evaluation) are handobj_d2/engine/pipeline.py's.
"""

import glob
import json
import logging
import os

import numpy as np
from detectron2.data import DatasetCatalog

from ..data.datasets.ho3d import register_ho3d
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
from ..utils.io import write_atomically
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
CONSISTENCY_SCORES = ("residual_2d3d", "temporal_distance", "shape_deviation")  # filters.py


class Experiment:
    """The stages of one seed; each returns its result, computing it only when missing.

    ``args`` holds the experiment's settings (tools/run_semi_synthetic_experiment.py's options):
    output, config_file, opts, teacher_iters, teacher_weights, student_iters, labeled_frames,
    test_frames, videos, frames_per_video, image_size (W, H pixels), boxes ("ground-truth" or
    "detector"), control, target_domain, shift_breakdown.
    """

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
