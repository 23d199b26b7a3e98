#!/usr/bin/env python
"""Make a synthetic hand-object dataset in HO3D's format (plus unlabeled videos).

    python tools/make_synthetic_dataset.py --output datasets/synthetic
    # a shifted domain: unlabeled videos and a labeled evaluation split for the
    # semi-supervised set-up (labeled training frames come from the default domain)
    python tools/make_synthetic_dataset.py --output datasets/synthetic_shifted \\
        --domain shifted --train 0 --eval 32 --videos 8
    # hands alone in FreiHAND v2's layout (4 sample versions of each training frame)
    python tools/make_synthetic_dataset.py --format freihand --output datasets/synthetic_freihand \
        --train 8 --eval 8

Layout, segmentation encoding and domains: datasets/README.md ("Synthetic set", "FreiHAND").
Rerunning the same command after an interruption finishes the set: the frames and videos
written before are kept (byte-identical to an uninterrupted run).
"""

import argparse
import logging
import sys

from handobj_d2.data.synthetic import (
    SEQUENCE_LENGTH,
    SYNTHETIC_DOMAIN_REGISTRY,
    dataset_summary,
    generate_dataset,
    prepare_output,
)
from handobj_d2.data.datasets.freihand import SAMPLE_VERSIONS
from handobj_d2.data.synthetic.freihand import generate_freihand_dataset

# Image size (W, H) of each format when --image-size is not given: HO3D-like, FreiHAND's crops.
DEFAULT_IMAGE_SIZE = {"ho3d": (320, 240), "freihand": (224, 224)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="root of the dataset tree")
    parser.add_argument("--format", default="ho3d", choices=sorted(DEFAULT_IMAGE_SIZE),
                        help="ho3d: hand-object frames and videos; freihand: hands alone")
    parser.add_argument("--versions", type=int, default=len(SAMPLE_VERSIONS),
                        help="freihand: sample versions of each training frame (1-4)")
    parser.add_argument("--train", type=int, default=64, help="labeled training frames")
    parser.add_argument("--eval", type=int, default=16, help="labeled evaluation frames")
    parser.add_argument("--videos", type=int, default=2, help="unlabeled videos")
    parser.add_argument("--frames-per-video", type=int, default=16)
    parser.add_argument("--frames-per-sequence", type=int, default=SEQUENCE_LENGTH,
                        help="labeled frames sharing object, hand shape and camera")  # fmt: skip
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("W", "H"),
                        help="pixels (ho3d: 320 240, freihand: 224 224)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", default="default", choices=sorted(name for name, _ in SYNTHETIC_DOMAIN_REGISTRY))
    parser.add_argument("--mano-path", default="",
                        help="MANO_RIGHT.pkl; empty: the project's synthetic hand")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing synthetic set at --output")  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("train", "eval", "videos", "frames_per_video"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.videos and args.frames_per_video < 1:
        parser.error("--frames-per-video must be >= 1 when --videos is")
    if args.frames_per_sequence < 1:
        parser.error("--frames-per-sequence must be >= 1")
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE[args.format]
    if not 1 <= args.versions <= len(SAMPLE_VERSIONS):
        parser.error(f"--versions must be 1 to {len(SAMPLE_VERSIONS)}")
    if min(args.image_size) < 32:
        parser.error("--image-size must be at least 32 x 32 pixels")
    return args


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.format == "freihand":
        try:
            prepare_output(args.output, args.overwrite)
            summary = generate_freihand_dataset(
                args.output, args.train, args.eval, args.versions, tuple(args.image_size),
                args.seed, args.domain, args.mano_path,
            )  # fmt: skip
        except ValueError as e:
            sys.exit(str(e))
        except OSError as e:
            raise SystemExit(f"error: {e}") from e
        print(summary)
        return 0
    options = dict(
        train=args.train,
        evaluation=args.eval,
        videos=args.videos,
        frames_per_video=args.frames_per_video,
        image_size=tuple(args.image_size),
        seed=args.seed,
        domain=args.domain,
        mano_path=args.mano_path,
        frames_per_sequence=args.frames_per_sequence,
    )
    try:
        prepare_output(args.output, args.overwrite, dataset_summary(**options))
    except ValueError as e:
        sys.exit(str(e))
    try:
        summary = generate_dataset(args.output, **options)
    except OSError as e:  # disk full, read-only or unwritable --output: rerun once fixed
        raise SystemExit(f"error: {e}") from e
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
