"""Config set-up shared by the tools: file + overrides -> frozen config, with clear errors."""

import difflib
import os

import torch
import yaml
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from ..config import add_handobj_config


class HandObjectConfigError(ValueError):
    """A user-facing problem with a config file, a config key or a dataset name."""


def setup_cfg(config_file="", opts=(), freeze=True):
    """Build the config: Detectron2 defaults + ``add_handobj_config`` + ``config_file`` + ``opts``.

    ``MODEL.DEVICE`` defaults to "cuda" when a GPU is visible and "cpu" otherwise; a value in the
    file or the overrides wins. Raises HandObjectConfigError naming the file or key at fault.
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
