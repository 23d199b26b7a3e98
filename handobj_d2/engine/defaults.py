"""Config set-up shared by the tools: file + overrides -> frozen config, with clear errors."""

import difflib
import logging
import math
import os

import torch
import yaml
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from ..config import add_handobj_config

logger = logging.getLogger(__name__)


class HandObjectConfigError(ValueError):
    """A user-facing problem with a config file, a config key or a dataset name."""


def setup_cfg(config_file="", opts=(), freeze=True):
    """Build the config: Detectron2 defaults + ``add_handobj_config`` + ``config_file`` + ``opts``.

    ``MODEL.DEVICE`` defaults to "cuda" when a GPU is visible and "cpu" otherwise; a value in the
    file or the overrides wins. Raises HandObjectConfigError naming the file or key at fault, or
    when the config would freeze randomly initialised layers (:func:`check_starting_point`) or
    gives both an epoch schedule and iterations (:func:`check_schedule`).
    """
    cfg = add_handobj_config(get_cfg())
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    if config_file:
        if not os.path.isfile(config_file):
            raise HandObjectConfigError(f"config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            raise HandObjectConfigError(f"{config_file}: {e.args[0]}") from None
        except (yaml.YAMLError, ValueError, TypeError, AssertionError) as e:
            raise HandObjectConfigError(f"{config_file}: cannot read it as a config: {e}") from None
    try:
        cfg.merge_from_list(list(opts or []))
    except (KeyError, ValueError, AssertionError) as e:
        raise HandObjectConfigError(f"bad command-line override {list(opts)}: {e}") from None
    check_starting_point(cfg, config_file or "the config")
    check_schedule(cfg, config_file or "the config")
    if freeze:
        cfg.freeze()
    return cfg


def check_datasets(cfg):
    """Raise HandObjectConfigError if a name in DATASETS.TRAIN/TEST is not registered."""
    registered = DatasetCatalog.list()
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise HandObjectConfigError(
                    f"DATASETS.{key}: dataset '{name}' is not registered.{hint} "
                    "See datasets/README.md for the datasets handobj_d2 registers and where "
                    "their files go."
                )


def starts_from_random_weights(cfg):
    """Whether training starts from random weights: MODEL.WEIGHTS empty, or a student trained
    with pseudo-labels from scratch (SEMI.STUDENT_INIT "scratch", which ignores MODEL.WEIGHTS)."""
    pseudo = cfg.SEMI.PSEUDO_DATASETS or cfg.SEMI.PSEUDO_LABEL_FILES
    return not cfg.MODEL.WEIGHTS or bool(pseudo and cfg.SEMI.STUDENT_INIT == "scratch")


def check_starting_point(cfg, source="the config"):
    """Raise HandObjectConfigError when the backbone would keep randomly initialised layers
    fixed: MODEL.BACKBONE.FREEZE_AT > 0 (stem and first stages never trained) or
    MODEL.RESNETS.NORM "FrozenBN" (norms fixed at scale 1, shift 0, unit statistics) while
    training starts from random weights. Those two settings are for ImageNet weights."""
    if not starts_from_random_weights(cfg):
        return
    frozen = []
    if cfg.MODEL.BACKBONE.FREEZE_AT > 0:
        frozen.append(
            f"MODEL.BACKBONE.FREEZE_AT {cfg.MODEL.BACKBONE.FREEZE_AT} freezes the stem and the "
            "first stages"
        )
    if cfg.MODEL.RESNETS.NORM == "FrozenBN":
        frozen.append('MODEL.RESNETS.NORM "FrozenBN" fixes every backbone norm')
    if frozen:
        raise HandObjectConfigError(
            f"{source}: {' and '.join(frozen)}, but the weights are random (MODEL.WEIGHTS is "
            "empty or SEMI.STUDENT_INIT is 'scratch'), so those layers would never learn. "
            'Train every layer from random weights with MODEL.BACKBONE.FREEZE_AT 0 and '
            'MODEL.RESNETS.NORM "BN", or start from ImageNet weights, e.g. MODEL.WEIGHTS '
            '"detectron2://ImageNet/MSRA/R-50.pkl" (FrozenBN, FREEZE_AT 2) or a torchvision '
            "ResNet-50 converted by tools/convert_released_checkpoint.py --torchvision-resnet50 "
            "for the released backbone (BN, FREEZE_AT 0)."
        )


def check_schedule(cfg, source="the config"):
    """Raise HandObjectConfigError when SOLVER.HANDOBJ.EPOCHS > 0 (STEPS / MAX_ITER computed at
    set-up) and SOLVER.STEPS or MAX_ITER are given too (they would be silently replaced)."""
    epochs = cfg.SOLVER.HANDOBJ.EPOCHS
    defaults = get_cfg().SOLVER
    given = [
        key
        for key, value, default in (
            ("MAX_ITER", cfg.SOLVER.MAX_ITER, defaults.MAX_ITER),
            ("STEPS", tuple(cfg.SOLVER.STEPS), tuple(defaults.STEPS)),
        )
        if value != default
    ]
    if epochs > 0 and given:
        raise HandObjectConfigError(
            f"{source}: SOLVER.HANDOBJ.EPOCHS {epochs} computes SOLVER.STEPS and MAX_ITER from "
            f"the training set's size, but SOLVER.{' and '.join(given)} are given too. Set "
            "SOLVER.HANDOBJ.EPOCHS 0 to train for the given iterations, or drop them."
        )


def iterations_per_epoch(num_records, batch_size):
    """Iterations of one pass over ``num_records`` records in batches of ``batch_size`` (the
    last batch may be short, as torch's DataLoader with drop_last False)."""
    if num_records <= 0 or batch_size <= 0:
        raise HandObjectConfigError(
            f"an epoch needs records and a batch size, got {num_records} records in batches "
            f"of {batch_size}"
        )
    return math.ceil(num_records / batch_size)


def epoch_schedule(epochs, step_epochs, iters_per_epoch):
    """(STEPS, MAX_ITER) of ``epochs`` epochs with a learning-rate step every ``step_epochs``
    epochs, stepped between epochs as torch's StepLR stepped once per epoch."""
    if epochs <= 0 or step_epochs <= 0:
        raise HandObjectConfigError(
            f"SOLVER.HANDOBJ.EPOCHS and STEP_EPOCHS must be positive, got {epochs}, {step_epochs}"
        )
    steps = tuple(e * iters_per_epoch for e in range(step_epochs, epochs, step_epochs))
    return steps, epochs * iters_per_epoch


def apply_epoch_schedule(cfg, num_records=None):
    """A copy of ``cfg`` whose SOLVER.STEPS / MAX_ITER come from SOLVER.HANDOBJ.EPOCHS and
    STEP_EPOCHS (``cfg`` itself when EPOCHS is 0). An epoch is one pass over the records of
    DATASETS.TRAIN (counted as the train loader reads them, or ``num_records``) in the labeled
    part of each batch (IMS_PER_BATCH less its pseudo-labeled samples); the result is logged."""
    epochs = cfg.SOLVER.HANDOBJ.EPOCHS
    if epochs <= 0:
        return cfg
    from detectron2.data import get_detection_dataset_dicts

    from ..data.build import pseudo_batch_size, pseudo_label_datasets

    if num_records is None:
        check_datasets(cfg)
        num_records = len(
            get_detection_dataset_dicts(
                cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
            )
        )
    batch = cfg.SOLVER.IMS_PER_BATCH
    if pseudo_label_datasets(cfg):
        batch -= pseudo_batch_size(cfg)
    per_epoch = iterations_per_epoch(num_records, batch)
    steps, max_iter = epoch_schedule(epochs, cfg.SOLVER.HANDOBJ.STEP_EPOCHS, per_epoch)
    cfg = cfg.clone()
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER = steps, max_iter
    if frozen:
        cfg.freeze()
    logger.info(
        f"Schedule of {epochs} epochs: {num_records} records of {', '.join(cfg.DATASETS.TRAIN)} "
        f"in batches of {batch} = {per_epoch} iterations per epoch; SOLVER.MAX_ITER {max_iter}, "
        f"SOLVER.STEPS {steps} (lr x{cfg.SOLVER.GAMMA} every "
        f"{cfg.SOLVER.HANDOBJ.STEP_EPOCHS} epochs)"
    )
    return cfg
