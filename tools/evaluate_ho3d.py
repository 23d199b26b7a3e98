#!/usr/bin/env python
"""Offline HO3D challenge scorer (the challenge's scores.txt, scores.html and PCK curves).

    python tools/evaluate_ho3d.py INPUT_DIR OUTPUT_DIR [--pred-file-name pred.json]
        [--set-name evaluation] [--version v2|v3]

INPUT_DIR holds ``<set>_xyz.json``, ``<set>_verts.json`` (the released ground truth) and the
prediction file (``[joints, vertices]``, OpenGL frame, metres, MANO joint order), or the
challenge server's ``ref/`` (ground truth) and ``res/`` (prediction) folders.
"""

import argparse
import logging
import sys

from handobj_d2.evaluation.ho3d_scorer import evaluate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input_dir", help="folder with the ground-truth and prediction files")
    parser.add_argument("output_dir", help="folder for scores.txt, scores.html and the curves")
    parser.add_argument("--pred-file-name", "--pred_file_name", default="pred.json")
    parser.add_argument("--set-name", "--set_name", default="evaluation")
    parser.add_argument("--version", default="v2", choices=("v2", "v3"), help="HO3D version")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        scores = evaluate(
            args.input_dir, args.output_dir, args.pred_file_name, args.set_name, args.version
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for key, value in scores.items():
        print(f"{key}: {value:f}")
    print(f"Scores written to {args.output_dir}/scores.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
