#!/usr/bin/env python
"""Convert the authors' released HO3D checkpoint to a Detectron2 checkpoint for handobj_d2.

    python tools/convert_released_checkpoint.py SRC DST \\
        [--config-file configs/HO3D-v2/handobj_R50_FPN_released.yaml] [KEY VALUE ...]

SRC: the released ``.pth`` / ``.pth.tar`` (github.com/stevenlsw/Semi-Hand-Object, the model
linked from its README). DST: the converted file, for ``MODEL.WEIGHTS`` with that config.
Every released tensor is mapped or dropped for a stated reason; an unknown or missing key stops
the conversion with the list of them (exit status 1). The released file has no detector: the
converted model runs on given hand and object boxes only (docs/released_model.md).
"""

import argparse
import logging
import os
import sys
from collections import Counter

import torch
from detectron2.modeling import build_model

from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.modeling.released_checkpoint import (
    DETECTOR_PREFIXES,
    ReleasedCheckpointError,
    convert_released_state_dict,
    released_state_dict,
)
from handobj_d2.utils.io import atomic_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="the released checkpoint")
    parser.add_argument("dst", help="the Detectron2 checkpoint to write (.pth)")
    parser.add_argument("--config-file", default="configs/HO3D-v2/handobj_R50_FPN_released.yaml",
                        help="config of the model the weights are for")  # fmt: skip
    parser.add_argument("--joints2d-order", choices=("manopth", "ho3d"), default="manopth",
                        help="joint order of the released 2D heatmaps (docs/released_model.md)")  # fmt: skip
    parser.add_argument("opts", nargs="*", help="config overrides KEY VALUE ...")
    return parser.parse_intermixed_args(argv)


def convert(src, dst, config_file, opts=(), joints2d_order="manopth"):
    """Convert ``src`` to ``dst`` for the model of ``config_file``; returns the report of
    ``convert_released_state_dict``."""
    if not os.path.isfile(src):
        raise FileNotFoundError(f"released checkpoint not found: {src}")
    cfg = setup_cfg(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
    model_state = build_model(cfg).state_dict()
    try:
        loaded = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReleasedCheckpointError(f"{src}: cannot be read as a PyTorch checkpoint ({e})")
    try:
        converted, report = convert_released_state_dict(
            released_state_dict(loaded), model_state, joints2d_order
        )
    except ReleasedCheckpointError as e:
        raise ReleasedCheckpointError(f"{src}:\n{e}") from None
    with atomic_file(dst) as f:
        torch.save({"model": converted, "__author__": "handobj_d2 released-checkpoint converter",
                    "released_checkpoint": os.path.abspath(src)}, f)  # fmt: skip
    return report


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        report = convert(args.src, args.dst, args.config_file, args.opts, args.joints2d_order)
    except (HandObjectConfigError, ReleasedCheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{report['mapped']} tensors mapped.")
    for reason, count in sorted(Counter(report["dropped"].values()).items()):
        print(f"{count} released tensors dropped: {reason}.")
    detector = [k for k in report["not_in_checkpoint"] if k.startswith(DETECTOR_PREFIXES)]
    print(
        f"The released file has no detector: {len(detector)} RPN / box-head tensors stay "
        "untrained, so run this model on given hand and object boxes "
        "(MODEL.HANDOBJ.INFERENCE_BOXES given; tools/demo.py --hand-box/--object-box/--boxes)."
    )
    print(f"Wrote {args.dst} (use it as MODEL.WEIGHTS with {args.config_file}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
