#!/usr/bin/env python
"""Offline FreiHAND scorer (the official eval.py's scores.txt, scores.html and PCK curves).

    python tools/evaluate_freihand.py PRED GT_ROOT OUTPUT_DIR [--set-name evaluation]

PRED: the submission, ``[joints (N, 21, 3), vertices (N, 778, 3)]`` in metres, FreiHAND's
camera frame and joint order (a pred.json file, or a folder holding pred.json); GT_ROOT: the
FreiHAND root holding ``evaluation_xyz.json`` and ``evaluation_verts.json`` (released with the
evaluation split). Prints the scores as JSON.
"""

import argparse
import json
import logging
import sys

from handobj_d2.evaluation.freihand_scorer import evaluate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pred", help="pred.json (or its folder)")
    parser.add_argument("gt_root", help="folder with <set>_xyz.json and <set>_verts.json")
    parser.add_argument("output_dir", help="folder for scores.txt, scores.html and the curves")
    parser.add_argument("--set-name", "--set_name", default="evaluation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        scores = evaluate(args.pred, args.gt_root, args.output_dir, args.set_name)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(scores, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
