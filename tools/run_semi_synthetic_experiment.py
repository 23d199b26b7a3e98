#!/usr/bin/env python
"""The paper's semi-supervised experiment on synthetic data, in one command.

    python tools/run_semi_synthetic_experiment.py --output output/semi_synthetic
    python tools/run_semi_synthetic_experiment.py --output DIR --seeds 0 1 2 3 4 \\
        --teacher-iters 2400 --student-iters 800 SEMI.FILTER.MAX_TEMPORAL_DISTANCE 0.02

Stages, options and outputs: ``--help`` and handobj_d2/semi/experiment.py. Writes
DIR/results.json and DIR/results.md; rerunning resumes.
"""

import os
import sys

import torch
from detectron2.utils.logger import setup_logger

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.semi.experiment import load_results, markdown_table, parse_args, run


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for name in ("detectron2", "handobj_d2"):
        setup_logger(os.path.join(args.output, "log.txt"), name=name, abbrev_name=name[:4])
    try:
        setup_cfg(args.config_file, args.opts)
        results = load_results(args)
    except (HandObjectConfigError, ValueError) as e:
        sys.exit(f"error: {e}")
    run(args, results)
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
