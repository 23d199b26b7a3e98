#!/usr/bin/env python
"""Compare handobj_d2's released recipe with the authors' code, step for step.

    python tools/compare_with_authors.py --authors-code Semi-Hand-Object --mano-root mano/models

``--authors-code``: a checkout of github.com/stevenlsw/Semi-Hand-Object (read, never copied
into this repository); ``--mano-root``: MANO_RIGHT.pkl or its folder. Their model gets seeded
random weights, is saved in their checkpoint layout and converted with
tools/convert_released_checkpoint.py; both run on the CPU. What is compared and how:
dev/authors_compare.py; how their code is imported (stand-ins for MANO's chumpy wrapper and
manopth where those are not installed): dev/authors_checkout.py; how both data pipelines get
the same random draws (their ``np.random`` / ``random`` calls patched for one sample):
dev/authors_draws.py. Prints one JSON object last.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dev import authors_checkout, authors_compare  # noqa: E402

TARGETS = {
    "max_rel_loss_diff": 1e-5,
    "max_rel_grad_diff": 1e-4,
    "max_rel_weight_diff_after_steps": 1e-5,
    "targets_max_abs.joints2d_px": 0.05,
    "targets_max_abs.hand_box_px": 0.05,
    "targets_max_abs.object_box_px": 0.05,
    "targets_max_abs.control_points_px": 0.05,
    "targets_max_abs.image_grey_levels": 1.0,
    "targets_max_abs.mask_cells": 0,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors-code", required=True, help="Semi-Hand-Object checkout")
    parser.add_argument("--mano-root", required=True, help="MANO_RIGHT.pkl or its folder")
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temporary one)")
    parser.add_argument("--size", type=int, default=128,
                        help="input side for (a)-(c), px (a multiple of 128)")
    parser.add_argument("--train-size", type=int, default=512, help="input side for (e), px")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed steps per side (e); the fastest of each side is compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs="*", help="our config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def failures(result):
    out = []
    for key, limit in TARGETS.items():
        value = result
        for part in key.split("."):
            value = value[part]
        if not value <= limit:
            out.append(f"{key} = {value:.3g} > {limit}")
    steps = result["train_step_seconds"]
    if steps["ours"] > steps["authors"]:
        out.append(f"train step: ours {steps['ours']:.2f} s > theirs {steps['authors']:.2f} s")
    return out


def run(args, workdir):
    dtype = torch.float64
    authors = authors_checkout.import_authors(args.authors_code)
    mano_dir = authors_checkout.mano_folder(args.mano_root, workdir)
    sides = authors_compare.Sides(authors, mano_dir, workdir, args.seed, args.opts)
    result = {"dtype": {"a-d": str(dtype).replace("torch.", ""), "e": "float32"},
              "stand_ins": authors.stand_ins}  # fmt: skip
    result["inference_max_abs"] = authors_compare.compare_inference(sides, dtype, args.size)
    result.update(authors_compare.compare_losses_and_grads(sides, dtype, args.size))
    same_norms = authors_compare.compare_losses_and_grads(sides, dtype, args.size, norms_eval=True)
    result["with_norms_in_eval_on_both_sides"] = {
        k: same_norms[k] for k in ("max_rel_loss_diff", "max_rel_grad_diff", "worst_grads")
    }
    result.update(authors_compare.compare_steps(sides, dtype, args.size))
    own = authors_compare.compare_steps(sides, dtype, args.size, same_gradients=False)
    result["steps_on_own_gradients"] = {k: own[k] for k in (
        "max_rel_weight_diff_after_steps", "max_rel_update_diff_after_steps",
        "max_rel_norm_statistics_diff_after_steps")}  # fmt: skip
    result["adam_one_step_rel_weight_change_from_1e-9_gradient_noise"] = (
        authors_compare.adam_noise_sensitivity(sides, dtype, args.size)
    )
    result["targets_max_abs"] = authors_compare.compare_targets(sides, workdir)
    fastest, all_times = authors_compare.time_train_steps(sides, args.train_size, args.repeats)
    result["train_step_seconds"] = fastest
    result["train_step_seconds_each"] = all_times
    result["failures"] = failures(result)
    return result


def main(argv=None):
    args = parse_args(argv)
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            result = run(args, workdir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
