"""Training for a time budget instead of a fixed iteration count (``make demo``): measure the
seconds per iteration of the config's own model, optimizer and training data on this machine,
then train for as many iterations as the budget holds, the LR steps at the config's fractions
of the schedule. The choice is written to ``<OUTPUT_DIR>/schedule.json`` and read back there,
so a resumed run keeps its schedule.
"""

import json
import logging
import os
import time

import torch
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from ..utils.io import write_atomically
from .trainer import HandObjectTrainer, initial_weights

logger = logging.getLogger(__name__)

SCHEDULE_FILE = "schedule.json"


def measure_seconds_per_iteration(cfg, iterations=4, warmup=2):
    """Median wall-clock seconds of a training iteration of ``cfg`` (data loading, forward,
    backward, optimizer step) over ``iterations`` after ``warmup`` untimed ones, on a
    throw-away model initialised like the run's (``initial_weights``: a student's speed
    depends on its teacher's detections)."""
    from detectron2.checkpoint import DetectionCheckpointer

    model = build_model(cfg)
    weights = initial_weights(cfg)
    if weights:
        DetectionCheckpointer(model).load(weights)
    model.train()
    trainer = SimpleTrainer(
        model,
        HandObjectTrainer.build_train_loader(cfg),
        HandObjectTrainer.build_optimizer(cfg, model),
    )
    times = []
    with EventStorage(0) as trainer.storage:
        for trainer.iter in range(warmup + iterations):
            start = time.perf_counter()
            trainer.run_step()
            if trainer.iter >= warmup:
                times.append(time.perf_counter() - start)
            trainer.storage.step()
    del trainer, model
    return float(torch.tensor(times).median())


def iterations_for_budget(seconds, seconds_per_iteration, minimum=1, maximum=None):
    """Iterations that fit in ``seconds`` at ``seconds_per_iteration``, within
    [``minimum``, ``maximum``]."""
    iterations = max(int(seconds / seconds_per_iteration), minimum)
    return iterations if maximum is None else min(iterations, maximum)


def with_iterations(cfg, iterations, checkpoints=4):
    """``cfg`` (cloned) for ``iterations`` iterations: SOLVER.STEPS at the same fractions of
    the schedule as in ``cfg``, ``checkpoints`` checkpoints on the way."""
    cfg = cfg.clone()
    cfg.defrost()
    fractions = [step / cfg.SOLVER.MAX_ITER for step in cfg.SOLVER.STEPS]
    cfg.SOLVER.STEPS = tuple(max(int(iterations * f), 1) for f in fractions)
    cfg.SOLVER.MAX_ITER = iterations
    cfg.SOLVER.CHECKPOINT_PERIOD = max(iterations // checkpoints, 1)
    cfg.freeze()
    return cfg


def budget_schedule(cfg, seconds, minimum=1, maximum=None, clock=time.perf_counter):
    """The schedule of a ``seconds`` training budget for ``cfg``: ``(cfg with MAX_ITER, STEPS,
    CHECKPOINT_PERIOD set, record)``. The budget covers the speed measurement and the training
    run's set-up, each taken to last as long as the measurement; the iterations fill the rest.
    ``record`` (also in <OUTPUT_DIR>/schedule.json) holds budget_seconds,
    measured_seconds_per_iteration, measurement_seconds and iterations. An existing
    schedule.json (an interrupted run) is reused as it is. ``clock``: seconds (tests fake it)."""
    path = os.path.join(cfg.OUTPUT_DIR, SCHEDULE_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            record = json.load(f)
        logger.info(f"{path}: resuming its schedule of {record['iterations']} iterations")
        return with_iterations(cfg, record["iterations"]), record
    start = clock()
    per_iteration = measure_seconds_per_iteration(cfg)
    measurement = clock() - start
    iterations = iterations_for_budget(seconds - 2 * measurement, per_iteration, minimum, maximum)
    record = {
        "budget_seconds": seconds,
        "measured_seconds_per_iteration": round(per_iteration, 4),
        "measurement_seconds": round(measurement, 1),
        "iterations": iterations,
    }
    logger.info(
        f"{per_iteration:.3f} s per iteration measured: {iterations} iterations for a budget "
        f"of {seconds:.0f} s"
    )
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    write_atomically(path, json.dumps(record, indent=2))
    return with_iterations(cfg, iterations), record
