"""Stages of the project's end-to-end jobs (``make demo``: demo_job.py; the semi-supervised
experiment: handobj_d2/semi/experiment.py), in one process: make the synthetic data, train,
evaluate. Each stage skips work already done, so a killed job resumes where it stopped when
rerun.
"""

import glob
import json
import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..data.synthetic import SUMMARY_FILE, generate_dataset
from ..utils.io import atomic_file, same_settings, write_atomically
from .trainer import HandObjectTrainer

FINAL_WEIGHTS = "model_final.pth"

logger = logging.getLogger(__name__)


def ensure_synthetic_dataset(root, **options):
    """Generate the synthetic HO3D-format set under ``root`` (options of
    ``data.synthetic.generate_dataset``) unless a finished one with the same options is
    there (a set whose generation was interrupted, ``complete`` False, is remade). Returns its
    summary dict."""
    marker = os.path.join(root, SUMMARY_FILE)
    if os.path.isfile(marker):
        with open(marker) as f:
            summary = json.load(f)
        made = dict(summary, videos=len(summary.get("videos", ())))  # the summary names them
        if summary.get("complete") and same_settings(made, options, ignore=("progress",)):
            logger.info(f"Synthetic set in {root} already made, reusing it")
            return summary
        logger.info(f"Synthetic set in {root} is unfinished or was made otherwise, remaking it")
    return generate_dataset(root, **options)


def train_model(cfg, log_to_output=True):
    """Train ``cfg`` into cfg.OUTPUT_DIR, resuming from its last checkpoint; returns the path of
    the final weights (training is skipped when they exist). Training does not evaluate
    (``evaluate_model`` does); cfg.SEED >= 0 seeds initialisation, data order and augmentation.
    Of the checkpoints only the final weights are kept, without the optimizer state (the
    intermediate ones and that state are 6x more). ``log_to_output``: Detectron2's logging to
    the console and cfg.OUTPUT_DIR/log.txt (False: the caller has set up logging)."""
    if log_to_output:
        setup_logger(output=cfg.OUTPUT_DIR, name="detectron2")
        setup_logger(output=cfg.OUTPUT_DIR, name="handobj_d2")
    final = os.path.join(cfg.OUTPUT_DIR, FINAL_WEIGHTS)
    if os.path.isfile(final):
        logger.info(f"{final} exists, skipping training")
        return final
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = ()
    cfg.freeze()
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED)
    trainer = HandObjectTrainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    weights = torch.load(final, map_location="cpu", weights_only=False)["model"]
    with atomic_file(final) as f:
        torch.save({"model": weights}, f)
    for path in glob.glob(os.path.join(cfg.OUTPUT_DIR, "model_0*.pth")):
        os.remove(path)
    return final


def evaluate_model(cfg, weights, results_file=None):
    """Evaluate ``weights`` ("" for the random initialisation) on DATASETS.TEST; returns
    {dataset: {metric: value}} and writes it atomically to ``results_file`` when given
    (read back instead of re-evaluating when it exists)."""
    if results_file and os.path.isfile(results_file):
        with open(results_file) as f:
            return json.load(f)
    model = HandObjectTrainer.build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    results = HandObjectTrainer.test(cfg, model)
    if len(cfg.DATASETS.TEST) == 1:  # Detectron2 unwraps the results of a single dataset
        results = {cfg.DATASETS.TEST[0]: results}
    results = {name: _flatten(metrics) for name, metrics in results.items()}
    if results_file:
        write_atomically(results_file, json.dumps(results, indent=2))
    return results


def _flatten(metrics):
    """Detectron2 results {task: {metric: value}} (or already flat) -> {"task/metric": value}."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": float(v) for k, v in value.items()})
        else:
            flat[key] = float(value)
    return flat
