"""The project's main job on its synthetic data (``make demo``, tools/run_demo.py), in stages:

1. make the synthetic HO3D-format set if it is not there;
2. evaluate the tiny model as it starts (its initial weights) on the evaluation split;
3. train the teacher (for a number of iterations or a time budget), evaluate it;
4. pseudo-label the synthetic videos with it (spatial-temporal filters) and self-train a
   student on labeled + pseudo-labeled frames (iterations or a budget too), evaluate it;
5. run the demo (overlays, meshes, JSON) on evaluation images, with their labelled hand and
   object boxes as in the evaluation (``demo_boxes`` "detected": the model's own detector);
6. write <output>/summary.json: the metrics of every stage, the iterations and seconds of each
   training, the seconds of every stage and the path of every artefact.

Every stage is logged as it starts and ends with the job's ETA (``StageProgress``). Rerunning
resumes: finished stages are read back, training continues from its last checkpoint with the
same schedule.
"""

import json
import logging
import os
import time

from detectron2.data import DatasetCatalog

from ..constants import OBJECT_CLASS
from ..data.video import find_videos
from ..semi.pseudo_labels import PseudoLabelGenerator
from ..semi.teacher import build_teacher
from ..utils.io import write_atomically
from ..utils.progress import StageProgress
from .budget import budget_schedule, with_iterations
from .defaults import setup_cfg
from .demo import Demo
from .pipeline import ensure_synthetic_dataset, evaluate_model, train_model
from .predictor import HandObjectPredictor

logger = logging.getLogger(__name__)

# Metrics shown side by side for every stage.
HEADLINE = ("hand/MPJPE_mm", "hand/PA_MPJPE_mm", "hand/AUC", "hand/joints2d_px",
            "object/ADD0.1D_seen", "object/REP5px")  # fmt: skip
# The ETA's plan for the stages that are not trainings, in seconds: per labeled and per video
# frame made, per evaluated / pseudo-labeled frame, per demo image, plus a fixed part (model and
# dataset set-up). A rough plan; StageProgress corrects the ETA as stages finish.
SECONDS_PER_LABELED_FRAME = 0.12
SECONDS_PER_VIDEO_FRAME = 0.04
SECONDS_PER_EVALUATED_FRAME = 0.15
SECONDS_PER_PSEUDO_LABELED_FRAME = 0.2
SECONDS_PER_DEMO_IMAGE = 1.0
SETUP_SECONDS = 5.0
TRAINING_RECORD = "training.json"  # in each training's OUTPUT_DIR: iterations and seconds


def headline(results):
    """The HEADLINE metrics of an ``evaluate_model`` result (its first dataset)."""
    metrics = next(iter(results.values()))
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def train_with_record(cfg, iterations, budget_seconds):
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


class DemoJob:
    """The job's stages in order (``run``); each adds its results to ``summary``.

    ``settings`` holds tools/run_demo.py's options: config_file, opts (KEY VALUE overrides of
    every stage), train / eval (labeled and evaluation frames), videos, frames_per_video,
    image_size (W, H pixels), teacher_init (weights path, "" for random), iters and
    teacher_seconds (teacher: iterations, or 0 for the budget in seconds), student_iters and
    student_seconds (the same for the student), demo_images (count), demo_boxes ("given" or
    "detected").
    """

    def __init__(self, settings, output, data_root):
        """
        Args:
            settings: see the class docstring.
            output (str): the job's folder (resumed).
            data_root (str): where the synthetic set is made (or found).
        """
        self.settings = settings
        self.out = os.path.abspath(output)
        self.data_root = data_root
        self.summary = {"stages": {}, "training": {}, "artefacts": {}}
        self.progress = StageProgress(self.plan())

    def plan(self):
        """[(stage name, planned seconds)] of every stage, in order."""
        s = self.settings
        video_frames = s.videos * s.frames_per_video
        evaluation = SETUP_SECONDS + SECONDS_PER_EVALUATED_FRAME * s.eval
        return [
            ("synthetic data", SECONDS_PER_LABELED_FRAME * (s.train + s.eval)
             + SECONDS_PER_VIDEO_FRAME * video_frames),
            ("untrained model: evaluation", evaluation),
            ("teacher: training", s.teacher_seconds),
            ("teacher: evaluation", evaluation),
            ("pseudo-labels", SETUP_SECONDS + SECONDS_PER_PSEUDO_LABELED_FRAME * video_frames),
            ("student: training", s.student_seconds),
            ("student: evaluation", evaluation),
            ("demo images", SETUP_SECONDS + SECONDS_PER_DEMO_IMAGE * s.demo_images),
        ]  # fmt: skip

    def cfg(self, name, *opts):
        """The config of the stage writing into <output>/<name>."""
        opts = ["OUTPUT_DIR", os.path.join(self.out, name), *opts, *self.settings.opts]
        return setup_cfg(self.settings.config_file, [str(o) for o in opts])

    def run(self):
        """Every stage; writes and returns the summary."""
        self.make_data()
        teacher_cfg = self.cfg("teacher", "MODEL.WEIGHTS", self.settings.teacher_init)
        self.evaluate_initial(teacher_cfg)
        teacher_weights = self.train_teacher(teacher_cfg)
        pseudo_labels = self.pseudo_label(teacher_weights)
        student_weights = self.self_train(teacher_weights, pseudo_labels)
        self.demo_images(teacher_cfg.DATASETS.TEST[0], student_weights or teacher_weights)
        return self.write_summary()

    def make_data(self):
        s = self.settings
        with self.progress.stage("synthetic data"):
            ensure_synthetic_dataset(self.data_root, train=s.train, evaluation=s.eval,
                                     videos=s.videos, frames_per_video=s.frames_per_video,
                                     image_size=tuple(s.image_size), seed=0)  # fmt: skip
        self.summary["artefacts"]["synthetic_dataset"] = os.path.abspath(self.data_root)

    def evaluate_initial(self, teacher_cfg):
        """The teacher's model before training (its initial weights) on the evaluation split."""
        results_file = os.path.join(self.out, "untrained", "evaluation.json")
        with self.progress.stage("untrained model: evaluation"):
            results = evaluate_model(teacher_cfg, "", results_file)
        self.summary["stages"]["untrained"] = headline(results)

    def _train_and_evaluate(self, role, cfg, iterations, budget_seconds):
        """The stages "<role>: training" and "<role>: evaluation" (into
        <OUTPUT_DIR>/evaluation.json); returns the weights, the training record and the headline
        metrics."""
        with self.progress.stage(f"{role}: training"):
            weights, record = train_with_record(cfg, iterations, budget_seconds)
        with self.progress.stage(f"{role}: evaluation"):
            results_file = os.path.join(cfg.OUTPUT_DIR, "evaluation.json")
            results = evaluate_model(cfg, weights, results_file)
        return weights, record, headline(results)

    def train_teacher(self, teacher_cfg):
        s = self.settings
        weights, record, metrics = self._train_and_evaluate(
            "teacher", teacher_cfg, s.iters, s.teacher_seconds
        )
        record["initial_weights"] = s.teacher_init or "random"
        self.summary["training"]["teacher"], self.summary["stages"]["trained"] = record, metrics
        self.summary["artefacts"]["teacher_weights"] = weights
        return weights

    def pseudo_label(self, teacher_weights):
        """Pseudo-labels of the synthetic videos; returns the pseudo-label file's path, or None
        when no frame passed the filters."""
        folder = os.path.join(self.out, "pseudo_labels")
        with self.progress.stage("pseudo-labels"):
            cfg = self.cfg("pseudo_labels", "MODEL.WEIGHTS", teacher_weights)
            generator = PseudoLabelGenerator(cfg, build_teacher(cfg), folder)
            result = generator.run(find_videos([os.path.join(self.data_root, "video_frames")]))
        path = os.path.join(folder, "pseudo_labels.json")
        self.summary["stages"]["pseudo_labels"] = result
        self.summary["artefacts"].update(
            pseudo_labels=path, pseudo_label_scores=os.path.join(folder, "scores.csv")
        )
        return path if result["kept"] else None

    def self_train(self, teacher_weights, pseudo_labels):
        """The student from the teacher on labeled + pseudo-labeled frames; returns its weights,
        or None (skipped) without pseudo-labels."""
        if pseudo_labels is None:
            logger.warning("No frame passed the pseudo-label filters: self-training skipped")
            self.summary["stages"]["self_trained"] = (
                "skipped: no frame passed the pseudo-label filters"
            )
            for name in ("student: training", "student: evaluation"):
                self.progress.replan(name, 0.0)
            return None
        s = self.settings
        cfg = self.cfg("student", "MODEL.WEIGHTS", teacher_weights,
                       "SEMI.PSEUDO_LABEL_FILES", (pseudo_labels,))  # fmt: skip
        weights, record, metrics = self._train_and_evaluate(
            "student", cfg, s.student_iters, s.student_seconds
        )
        self.summary["training"]["student"], self.summary["stages"]["self_trained"] = (
            record, metrics
        )  # fmt: skip
        self.summary["artefacts"]["student_weights"] = weights
        return weights

    def demo_images(self, dataset, weights):
        """The demo on the first ``demo_images`` records of ``dataset`` with ``weights``."""
        folder = os.path.join(self.out, "demo_images")
        with self.progress.stage("demo images"):
            records = DatasetCatalog.get(dataset)[: self.settings.demo_images]
            demo = Demo(HandObjectPredictor(self.cfg("demo_images", "MODEL.WEIGHTS", weights)),
                        folder)  # fmt: skip
            for record in records:
                obj = next(a for a in record["annotations"] if a["category_id"] == OBJECT_CLASS)
                hand = next(a for a in record["annotations"] if a["category_id"] != OBJECT_CLASS)
                given = self.settings.demo_boxes == "given"
                boxes = (hand["bbox"], obj["bbox"]) if given else None
                name = record["image_id"].replace("/", "_")
                demo.image(record["file_name"], name, record["camera_K"], obj["object_name"],
                           boxes)  # fmt: skip
            write_atomically(os.path.join(folder, "predictions.json"), json.dumps(demo.entries))
        self.summary["artefacts"]["demo_images"] = folder

    def write_summary(self):
        """<output>/summary.json: the summary with every stage's seconds; returns it."""
        spent = self.progress.spent
        self.summary["stage_seconds"] = {name: round(s, 1) for name, s in spent.items()}
        self.summary["total_seconds"] = round(sum(spent.values()), 1)
        write_atomically(os.path.join(self.out, "summary.json"), json.dumps(self.summary, indent=2))
        return self.summary
