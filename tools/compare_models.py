#!/usr/bin/env python
"""Two models' predictions side by side on the same inputs (the supplement's Appendix D).

    python tools/compare_models.py \\
        --model baseline configs/synthetic/handobj_tiny_fast.yaml base.pth \\
        --model self-trained configs/synthetic/semi_student.yaml student.pth \\
        --dataset synthetic_eval --num-images 8 --output output/compare

Each ``--model LABEL CONFIG WEIGHTS`` is one row of every picture, the first on top (the
baseline). Inputs: the first ``--num-images`` records of a registered ``--dataset`` (their
labelled hand and object boxes given, the evaluation protocol; ``--detect`` lets each model
detect), or image files (``--input``, with ``--hand-box`` / ``--object-box`` or detected).
Writes ``comparison_000.png``... (``--per-picture`` inputs each) and ``comparison.json`` (each
model's mean 2D joint error per input, where the record has 2D joints). Trailing KEY VALUE
pairs override every model's config.
"""

import argparse
import sys

from handobj_d2.engine import HandObjectConfigError, HandObjectPredictor, setup_cfg
from handobj_d2.engine.comparison import (
    ComparedModel,
    compare_models,
    dataset_inputs,
    image_inputs,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs=3, action="append", required=True,
                        metavar=("LABEL", "CONFIG", "WEIGHTS"),
                        help="a model to compare (twice or more; the first is the baseline)")  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="registered dataset whose first records are compared")
    source.add_argument("--input", nargs="+", help="image files")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--per-picture", type=int, default=4, help="inputs per picture")
    parser.add_argument("--detect", action="store_true",
                        help="with --dataset: each model detects instead of taking the labelled boxes")  # fmt: skip
    parser.add_argument("--hand-box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"))
    parser.add_argument("--object-box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"))
    parser.add_argument("--output", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if len(args.model) < 2:
        parser.error("give at least two --model LABEL CONFIG WEIGHTS")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        models = []
        for label, config, weights in args.model:
            cfg = setup_cfg(config, ["MODEL.WEIGHTS", weights, *args.opts])
            models.append(ComparedModel(label, HandObjectPredictor(cfg)))
        if args.dataset:
            inputs = dataset_inputs(args.dataset, args.num_images, given_boxes=not args.detect)
        else:
            inputs = image_inputs(args.input[: args.num_images], args.hand_box, args.object_box)
        pictures = compare_models(models, inputs, args.output, args.per_picture)
    except (HandObjectConfigError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in pictures:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
