#!/usr/bin/env python
"""Run a hand-object model on images, folders, videos or a webcam and save what it sees.

    python tools/demo.py --config-file configs/synthetic/handobj_tiny.yaml \\
        --input photo.jpg frames/ clip.mp4 --output output/demo_images \\
        MODEL.WEIGHTS output/synthetic_tiny/model_final.pth

For every image (or video frame) it writes the picture with the hand box, the 2D skeleton, the
projected hand mesh and the object's box (its 3D box when ``--object-name`` or the dataset
gives the object's model), the hand meshes in the camera frame (meshes/*.obj or .ply, metres)
and ``predictions.json``. Videos and the webcam become annotated mp4 files. Without
``--intrinsics`` the camera is assumed to have a focal length of the longer image side.

Given boxes replace the detector (needed for the authors' released model, which has none,
docs/released_model.md): ``--hand-box X1 Y1 X2 Y2 [--object-box X1 Y1 X2 Y2]`` for every input
(without ``--object-box``: a hand holding nothing, no object pose), or ``--boxes boxes.json`` per
input, ``{"photo.jpg": {"hand_box": [...], "object_box": [...]}}`` (keys: the input path as given
or its file name; ``object_box`` optional; a video's value: one pair, or a list with a pair or
null per frame).

Exit status: 0 when a hand was found in every image and video, 1 for bad input (missing
file, unreadable image or video, bad config), 2 when some image or video had no hand.
"""

import argparse
import logging
import os
import sys

from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.engine.demo import DemoInputError, GivenBoxes, run_demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", default="configs/synthetic/handobj_tiny.yaml")
    parser.add_argument("--input", nargs="+", required=True,
                        help="images, folders of images, video files, or 'webcam'")  # fmt: skip
    parser.add_argument("--output", required=True, help="folder for everything the demo writes")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="camera intrinsics in pixels (default: focal = longer side)")  # fmt: skip
    parser.add_argument("--object-name", help="the held object, for its 3D box (e.g. a YCB name)")
    parser.add_argument("--hand-box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                        help="hand box (pixels) for every input")  # fmt: skip
    parser.add_argument("--object-box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                        help="object box (pixels) for every input, with --hand-box; without "
                             "it the hand holds nothing")  # fmt: skip
    parser.add_argument("--boxes", help="JSON file of hand and object boxes per input")
    parser.add_argument("--mesh-format", choices=("obj", "ply"), default="obj")
    parser.add_argument("--max-frames", type=int, default=300,
                        help="frames to read from the webcam")  # fmt: skip
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def given_boxes(args):
    """GivenBoxes from --hand-box / --object-box or --boxes, or None (the detector's boxes)."""
    pair = (args.hand_box, args.object_box)
    if args.boxes and any(b is not None for b in pair):
        raise DemoInputError("give either --boxes or --hand-box/--object-box, not both")
    if args.boxes:
        return GivenBoxes.from_file(args.boxes)
    if all(b is None for b in pair):
        return None
    if args.hand_box is None:
        raise DemoInputError("--object-box needs --hand-box")
    return GivenBoxes.from_pair(args.hand_box, args.object_box)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        boxes = given_boxes(args)
        cfg = setup_cfg(args.config_file, args.opts)
        missing = run_demo(cfg, args.input, args.output, args.intrinsics, args.object_name,
                           args.mesh_format, args.max_frames, boxes)  # fmt: skip
    except (HandObjectConfigError, DemoInputError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    predictions = os.path.join(args.output, "predictions.json")
    print(f"Results in {args.output}: annotated images/videos, meshes/, {predictions}")
    if missing:
        print(f"error: no hand found in {', '.join(missing)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
