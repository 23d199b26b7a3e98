"""A pseudo-label generation run (tools/generate_pseudo_labels.py) before it starts: every input
checked, and the settings a rerun into the same output folder must share to resume it."""

import json
import os

from ..data.video import find_videos
from ..geometry import intrinsics_matrix
from ..utils.io import same_settings
from .teacher import distillation_transforms, load_boxes_file

# The settings of a run, kept in its output folder.
SETTINGS_FILE = "generation.json"

__all__ = ["SETTINGS_FILE", "check_inputs", "run_settings"]


def run_settings(cfg, config_file="", boxes="", intrinsics=None):
    """What determines the output: a rerun into the same folder must match it."""
    return {
        "config_file": os.path.abspath(config_file) if config_file else "",
        "weights": cfg.MODEL.WEIGHTS,
        "boxes": os.path.abspath(boxes) if boxes else "",
        "intrinsics": list(intrinsics) if intrinsics else None,
        "semi": json.loads(json.dumps(cfg.SEMI)),
    }


def check_inputs(cfg, videos, output, config_file="", boxes="", intrinsics=None):
    """Every user-facing problem of a run before any work starts: raises ValueError / OSError
    with a message naming the input (the videos, the boxes file, the intrinsics, the teacher's
    weights, SEMI.MODE, an output folder of a run with other settings)."""
    distillation_transforms(cfg)  # a bad SEMI.MODE or empty transform lists
    find_videos(videos)  # missing paths, unreadable videos, empty folders
    if boxes:
        load_boxes_file(boxes)
    if intrinsics is not None:
        intrinsics_matrix(intrinsics)
    weights = cfg.MODEL.WEIGHTS
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS: teacher checkpoint not found: {weights}")
    settings_path = os.path.join(output, SETTINGS_FILE)
    if os.path.isfile(settings_path):
        with open(settings_path) as f:
            previous = json.load(f)
        if not same_settings(previous, run_settings(cfg, config_file, boxes, intrinsics)):
            raise ValueError(
                f"{output} holds pseudo-labels made with other settings ({settings_path}); "
                "choose another --output or delete it"
            )
