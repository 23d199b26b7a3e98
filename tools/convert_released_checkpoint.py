#!/usr/bin/env python
"""Convert the authors' released HO3D checkpoint, or torchvision's ImageNet ResNet-50, to a
Detectron2 checkpoint for handobj_d2.

    python tools/convert_released_checkpoint.py SRC DST \\
        [--config-file configs/HO3D-v2/handobj_R50_FPN_released.yaml] [KEY VALUE ...]
    python tools/convert_released_checkpoint.py --torchvision-resnet50 FILE DST [--seed N] \\
        [--config-file configs/HO3D-v2/handobj_R50_FPN_released.yaml] [KEY VALUE ...]

SRC: the released ``.pth`` / ``.pth.tar`` (github.com/stevenlsw/Semi-Hand-Object, the model
linked from its README). DST: the converted file, for ``MODEL.WEIGHTS`` with that config.
Every released tensor is mapped or dropped for a stated reason; an unknown or missing key stops
the conversion with the list of them (exit status 1). The released file has no detector: the
converted model runs on given hand and object boxes only (docs/released_model.md).

``--torchvision-resnet50 FILE``: the start of the released training (their ``traineval.py``):
torchvision's ImageNet ResNet-50 (resnet50-19c8e357.pth or resnet50-0676ba61.pth, a file you
already have: nothing is downloaded) in the released backbone, every other layer initialised
(seeded by ``--seed``) as the released code initialises it. DST holds the whole model but the
MANO layer, whose buffers come from MODEL.MANO.MODEL_PATH.
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
    HAND_LAYER_PREFIX,
    ReleasedCheckpointError,
    convert_released_state_dict,
    convert_torchvision_resnet50,
    released_initialisation,
    released_state_dict,
)
from handobj_d2.utils.io import atomic_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n")[:2]))
    parser.add_argument("paths", nargs="*", metavar="SRC DST [KEY VALUE ...]",
                        help="the released checkpoint (not with --torchvision-resnet50), the "
                        "Detectron2 checkpoint to write (.pth), then config overrides")  # fmt: skip
    parser.add_argument("--torchvision-resnet50", metavar="FILE",
                        help="convert torchvision's ImageNet ResNet-50 FILE instead")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0,
                        help="--torchvision-resnet50: seed of the heads' initialisation")  # fmt: skip
    parser.add_argument("--config-file", default="configs/HO3D-v2/handobj_R50_FPN_released.yaml",
                        help="config of the model the weights are for")  # fmt: skip
    parser.add_argument("--joints2d-order", choices=("manopth", "ho3d"), default="manopth",
                        help="joint order of the released 2D heatmaps (docs/released_model.md)")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    count = 1 if args.torchvision_resnet50 else 2
    if len(args.paths) < count or (len(args.paths) - count) % 2:
        parser.error(
            "expected " + ("DST" if count == 1 else "SRC DST") + " then KEY VALUE pairs, got "
            f"{args.paths}"
        )
    args.src = args.torchvision_resnet50 or args.paths[0]
    args.dst, args.opts = args.paths[count - 1], args.paths[count:]
    return args


def _write(dst, converted, source, author):
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with atomic_file(dst) as f:
        torch.save({"model": converted, "__author__": author, "source": os.path.abspath(source)},
                   f)  # fmt: skip


def _load(src):
    if not os.path.isfile(src):
        raise FileNotFoundError(f"checkpoint not found: {src}")
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReleasedCheckpointError(f"{src}: cannot be read as a PyTorch checkpoint ({e})")


def convert_torchvision(src, dst, config_file, opts=(), seed=0):
    """Write ``dst``: the model of ``config_file`` with torchvision's ResNet-50 ``src`` in its
    backbone and the released initialisation elsewhere (``seed``); returns the report of
    ``convert_torchvision_resnet50``."""
    cfg = setup_cfg(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
    loaded = _load(src)
    torch.manual_seed(seed)
    model = build_model(cfg)
    released_initialisation(model)
    state = model.state_dict()
    try:
        converted, report = convert_torchvision_resnet50(loaded, state)
    except ReleasedCheckpointError as e:
        raise ReleasedCheckpointError(f"{src}:\n{e}") from None
    weights = {k: v for k, v in state.items() if not k.startswith(HAND_LAYER_PREFIX)}
    weights.update(converted)
    _write(dst, weights, src, "handobj_d2 torchvision ResNet-50 converter")
    return report


def convert(src, dst, config_file, opts=(), joints2d_order="manopth"):
    """Convert ``src`` to ``dst`` for the model of ``config_file``; returns the report of
    ``convert_released_state_dict``."""
    loaded = _load(src)
    cfg = setup_cfg(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
    model_state = build_model(cfg).state_dict()
    try:
        converted, report = convert_released_state_dict(
            released_state_dict(loaded), model_state, joints2d_order
        )
    except ReleasedCheckpointError as e:
        raise ReleasedCheckpointError(f"{src}:\n{e}") from None
    _write(dst, converted, src, "handobj_d2 released-checkpoint converter")
    return report


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        if args.torchvision_resnet50:
            report = convert_torchvision(args.src, args.dst, args.config_file, args.opts, args.seed)
        else:
            report = convert(args.src, args.dst, args.config_file, args.opts, args.joints2d_order)
    except (HandObjectConfigError, ReleasedCheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{report['mapped']} tensors mapped.")
    for reason, count in sorted(Counter(report["dropped"].values()).items()):
        print(f"{count} tensors dropped: {reason}.")
    if args.torchvision_resnet50:
        print(
            "The backbone holds torchvision's ImageNet ResNet-50; the other layers start as the "
            f"released code's (seed {args.seed})."
        )
    else:
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
