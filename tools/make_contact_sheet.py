#!/usr/bin/env python
"""Contact sheet of the synthetic set: labeled frames of the default domain and of the shifted
domain, each beside a copy with its annotations drawn from the files on disk (2D skeleton
projected from handJoints3D, the object's 3D box from objRot / objTrans / objCorners3DRest),
and a strip of a shifted-domain unlabeled video.

    python tools/make_contact_sheet.py --output docs/images/synthetic_samples.png
    python tools/make_contact_sheet.py --output sheet.png --dataset datasets/synthetic \\
        --dataset datasets/synthetic_shifted      # sets made by make_synthetic_dataset.py
"""

import argparse
import os
import pickle
import sys
import tempfile

import cv2
import numpy as np
from tqdm import tqdm

from handobj_d2.data.synthetic import generate_dataset
from handobj_d2.geometry import (
    HO3D_TO_MANOPTH,
    OPENGL_TO_OPENCV,
    box_control_points,
    points_to_box,
    project_points,
)
from handobj_d2.utils.io import read_image
from handobj_d2.visualization import draw_object_box_3d, draw_skeleton

LABEL_HEIGHT = 22  # px, the title strip above each row
GAP = 4  # px between tiles


def annotate(image, meta):
    """Copy of a BGR frame with the meta's hand skeleton and object 3D box drawn (HO3D train
    meta: OpenGL camera frame, MANO joint order)."""
    out = image.copy()
    K = np.asarray(meta["camMat"], dtype=np.float64)
    object_R = OPENGL_TO_OPENCV @ cv2.Rodrigues(meta["objRot"].astype(np.float64))[0]
    object_t = OPENGL_TO_OPENCV @ meta["objTrans"].astype(np.float64)
    draw_object_box_3d(out, box_control_points(meta["objCorners3DRest"]), object_R, object_t, K)
    joints = (meta["handJoints3D"].astype(np.float64) @ OPENGL_TO_OPENCV)[HO3D_TO_MANOPTH]
    draw_skeleton(out, project_points(joints, K))
    return out


def train_frames(root, count):
    """(image BGR, meta) of the first frame of the first ``count`` train sequences."""
    with open(os.path.join(root, "train.txt")) as f:
        names = [n for n in f.read().split() if n.endswith("/0000")][:count]
    if len(names) < count:
        raise ValueError(f"{root}/train.txt lists fewer than {count} sequences")
    frames = []
    for name in names:
        sequence, frame = name.split("/")
        folder = os.path.join(root, "train", sequence)
        with open(os.path.join(folder, "meta", f"{frame}.pkl"), "rb") as f:
            meta = pickle.load(f)
        frames.append((read_image(os.path.join(folder, "rgb", f"{frame}.png")), meta))
    return frames


def _zoom(images, points, margin=1.6):
    """Crop every BGR image to the box of ``points`` (N, 2) px enlarged ``margin`` times (at
    the images' aspect ratio) and scale it back up to the image size."""
    height, width = images[0].shape[:2]
    box = points_to_box(points)
    centre, size = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * margin
    scale = max(min(width / size[0], height / size[1]), 1.0)
    M = np.array([[scale, 0, width / 2 - scale * centre[0]],
                  [0, scale, height / 2 - scale * centre[1]]])  # fmt: skip
    return [cv2.warpAffine(i, M, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE) for i in images]  # fmt: skip


def video_strip(root, count):
    """``count`` frames (BGR) spread over the first video of a set, zoomed on the hand and
    object (the box of their projected ground truth over the whole video), and their
    indices."""
    folder = os.path.join(root, "video_frames")
    if not os.path.isdir(folder) or not os.listdir(folder):
        raise ValueError(f"{root} holds no video_frames")
    name = sorted(os.listdir(folder))[0]
    files = sorted(os.listdir(os.path.join(folder, name)))
    with open(os.path.join(root, "video_ground_truth", f"{name}.pkl"), "rb") as f:
        truth = pickle.load(f)["frames"]
    points = np.concatenate(
        [
            project_points(
                np.concatenate([m["handJoints3D"], m["objCorners3D"]]) @ OPENGL_TO_OPENCV,
                np.asarray(m["camMat"], dtype=np.float64),
            )  # fmt: skip
            for m in truth
        ]
    )
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    images = [read_image(os.path.join(folder, name, files[i])) for i in picks]
    return _zoom(images, points), picks


def _row(title, tiles):
    """A titled row of equally sized BGR tiles."""
    height, width = tiles[0].shape[:2]
    row = np.full((LABEL_HEIGHT + height, len(tiles) * (width + GAP) - GAP, 3), 255, np.uint8)
    cv2.putText(row, title, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)  # fmt: skip
    for index, tile in enumerate(tiles):
        x = index * (width + GAP)
        row[LABEL_HEIGHT:, x : x + width] = tile
    return row


def contact_sheet(default_root, shifted_root, columns):
    """The sheet (BGR) from a default-domain and a shifted-domain set."""
    rows = []
    for domain, root in (("default", default_root), ("shifted", shifted_root)):
        frames = train_frames(root, columns)
        rows.append(_row(f"{domain} domain: labeled frames", [image for image, _ in frames]))
        rows.append(_row(f"{domain} domain: handJoints3D and object box projected",
                         [annotate(image, meta) for image, meta in frames]))  # fmt: skip
    images, picks = video_strip(shifted_root, columns)
    rows.append(_row(f"shifted domain: unlabeled video (zoomed), frames "
                     f"{', '.join(map(str, picks))}", images))  # fmt: skip
    width = max(row.shape[1] for row in rows)
    rows = [
        np.pad(r, ((0, GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows
    ]
    return np.concatenate(rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--dataset", action="append", default=[], metavar="DIR",
                        help="a default-domain then a shifted-domain set (with a video); "
                        "none: generate both in a temporary folder")  # fmt: skip
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.dataset) not in (0, 2):
        parser.error("give --dataset twice (default domain, then shifted domain) or not at all")
    if args.columns < 1:
        parser.error("--columns must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        roots = args.dataset
        if not roots:
            roots = [os.path.join(scratch, domain) for domain in ("default", "shifted")]
            for root, videos in tqdm(list(zip(roots, (0, 1))), desc="domains"):
                generate_dataset(root, train=args.columns, evaluation=0, frames_per_sequence=1,
                                 videos=videos, frames_per_video=48,
                                 image_size=tuple(args.image_size), seed=args.seed,
                                 domain=os.path.basename(root), progress=False)  # fmt: skip
        sheet = contact_sheet(*roots, args.columns)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if not cv2.imwrite(args.output, sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {args.output}")
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
