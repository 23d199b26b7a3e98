"""Pseudo-label generation: a teacher's predictions on unlabeled videos, filtered by
spatial-temporal consistency, written as a Detectron2 dataset.

Output folder layout (every file written atomically; a rerun skips finished videos):

    videos/<video>.json   per video: every frame's prediction, scores and verdicts, and the
                          pseudo-label records of its kept frames (written last: "done" marker)
    frames/<video>/<frame:06d>.jpg   kept frames of video files (frame folders are referenced)
    pseudo_labels.json    Detectron2 dataset dicts of every kept frame (register with
                          handobj_d2.data.datasets.register_pseudo_label_dataset)
    scores.csv            one row per frame: every consistency score and every filter's verdict
    summary.json          frame counts: predicted, failing each filter, kept; mode, thresholds
"""

import csv
import io
import json
import logging
import os
import tempfile

import cv2
import numpy as np
from detectron2.structures import BoxMode
from detectron2.utils import comm
from tqdm import tqdm

from ..constants import HAND_CLASS, OBJECT_CLASS
from ..geometry import default_intrinsics
from .filters import apply_filters

logger = logging.getLogger(__name__)

# Per-frame prediction fields the teacher returns (see ``PseudoLabelGenerator``).
PREDICTION_FIELDS = (
    "hand_box",
    "hand_score",
    "object_box",
    "object_score",
    "joints2d",
    "joints3d",
    "mano_shape",
)


# Names of the temporary files of ``write_atomically`` (and other writers that rename into place).
TEMPORARY_PREFIX = ".tmp-"


def write_atomically(path, data, mode="w"):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file and a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=TEMPORARY_PREFIX)
    try:
        with os.fdopen(handle, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def remove_temporary_files(folder, recursive=True):
    """Delete the TEMPORARY_PREFIX files a killed writer left in ``folder`` (and below); returns
    their paths. Call it only where no other process is writing."""
    removed = []
    for root, dirs, files in os.walk(folder):
        removed += [os.path.join(root, f) for f in files if f.startswith(TEMPORARY_PREFIX)]
        if not recursive:
            break
    for path in removed:
        os.remove(path)
    if removed:
        logger.info(f"Removed {len(removed)} temporary file(s) of an interrupted run in {folder}")
    return removed


def filter_names(cfg):
    """The filters of ``SEMI.MODE``: all of SEMI.FILTER.NAMES ("filtered") or none
    ("distillation", the data-distillation baseline)."""
    if cfg.SEMI.MODE not in ("filtered", "distillation"):
        raise ValueError(f"SEMI.MODE must be 'filtered' or 'distillation', got {cfg.SEMI.MODE!r}")
    return list(cfg.SEMI.FILTER.NAMES) if cfg.SEMI.MODE == "filtered" else []


class PseudoLabelGenerator:
    """Runs a teacher over videos and writes filtered pseudo-labels.

    Args:
        cfg: config (SEMI.*).
        predict: ``predict(images, frame_indices, video_name) -> list`` of per-frame dicts with
            PREDICTION_FIELDS (numpy; joints2d (21,2) px, joints3d (21,3) m root-relative,
            mano_shape (10,), boxes (4,) px, scores) or None where no hand was found.
        output_dir: where everything is written.
        intrinsics: optional 3x3 camera matrix for every video; else
            ``geometry.default_intrinsics``.
    """

    def __init__(self, cfg, predict, output_dir, intrinsics=None):
        self.cfg = cfg
        self.predict = predict
        self.output_dir = output_dir
        self.intrinsics = intrinsics
        self.filters = filter_names(cfg)

    def video_result_path(self, source):
        return os.path.join(self.output_dir, "videos", f"{source.name}.json")

    def run(self, sources):
        """Process this process's share of ``sources`` (skipping finished ones), then merge on
        the main process. Returns the summary dict (on the main process, else None)."""
        rank, world = comm.get_rank(), comm.get_world_size()
        for source in sources[rank::world]:
            if os.path.isfile(self.video_result_path(source)):
                logger.info(f"{source.name}: already done, skipping")
                continue
            result = self.process_video(source)
            write_atomically(self.video_result_path(source), json.dumps(result))
        comm.synchronize()
        return self.merge(sources) if comm.is_main_process() else None

    def _predict_video(self, source):
        """Teacher predictions of every frame, in batches: [(frame_index, prediction or None)],
        and the frame size (height, width)."""
        frames, batch, size = [], [], None

        def flush():
            indices = [index for index, _ in batch]
            frames.extend(
                zip(indices, self.predict([image for _, image in batch], indices, source.name))
            )
            batch.clear()

        for index, image in tqdm(
            source, total=len(source), desc=source.name, position=comm.get_rank(), leave=False
        ):
            size = image.shape[:2]
            batch.append((index, image))
            if len(batch) == self.cfg.SEMI.BATCH_SIZE:
                flush()
        if batch:
            flush()
        return frames, size

    def _frame_files(self, source, indices):
        """File names (relative to the output folder, or absolute) of the frames ``indices``;
        frames of video files are decoded a second time and saved as JPEG."""
        if source.is_folder:
            return {index: os.path.abspath(source.frame_path(index)) for index in indices}
        wanted, files = set(indices), {}
        for index, image in source:
            if index in wanted:
                files[index] = os.path.join("frames", source.name, f"{index:06d}.jpg")
                ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise RuntimeError(f"{source.path}: cannot encode frame {index} as JPEG")
                write_atomically(
                    os.path.join(self.output_dir, files[index]), encoded.tobytes(), mode="wb"
                )
        return files

    def process_video(self, source):
        """Predict, filter and build the records of one video (kept frames' images written)."""
        frames, (height, width) = self._predict_video(source)
        predicted = [(index, p) for index, p in frames if p is not None]
        table = [
            {"frame_index": index, "predicted": False, "kept": False}
            for index, p in frames
            if p is None
        ]
        records = []
        if predicted:
            arrays = {
                key: np.stack([np.asarray(p[key], dtype=np.float64) for _, p in predicted])
                for key in PREDICTION_FIELDS
            }
            arrays["frame_index"] = np.array([index for index, _ in predicted])
            columns, kept = apply_filters(arrays, self.cfg, self.filters)
            files = self._frame_files(
                source, [index for (index, _), k in zip(predicted, kept) if k]
            )
            K = (
                self.intrinsics
                if self.intrinsics is not None
                else default_intrinsics(width, height).tolist()
            )
            for row, (index, prediction) in enumerate(predicted):
                entry = {"frame_index": index, "predicted": True, "kept": bool(kept[row])}
                entry.update({name: _jsonable(values[row]) for name, values in columns.items()})
                entry["prediction"] = {key: _jsonable(prediction[key]) for key in PREDICTION_FIELDS}
                table.append(entry)
                if kept[row]:
                    records.append(
                        _record(source.name, index, files[index], prediction, K, height, width)
                    )
        table.sort(key=lambda e: e["frame_index"])
        return {
            "video": source.name,
            "path": source.path,
            "num_frames": len(frames),
            "frames": table,
            "records": records,
        }

    def merge(self, sources):
        """Combine the per-video results of ``sources`` into the dataset, table and summary."""
        results = []
        for source in sources:
            with open(self.video_result_path(source)) as f:
                results.append(json.load(f))
        records = [r for result in results for r in result["records"]]
        write_atomically(os.path.join(self.output_dir, "pseudo_labels.json"), json.dumps(records))
        write_atomically(os.path.join(self.output_dir, "scores.csv"), _score_table(results))
        frames = [frame for result in results for frame in result["frames"]]
        predicted = [f for f in frames if f["predicted"]]
        summary = {
            "mode": self.cfg.SEMI.MODE,
            "filters": self.filters,
            "thresholds": {k: v for k, v in self.cfg.SEMI.FILTER.items() if k != "NAMES"},
            "videos": len(results),
            "frames": len(frames),
            "frames_with_prediction": len(predicted),
            "failed": {
                name: sum(not f[f"pass_{name}"] for f in predicted) for name in self.filters
            },
            "kept": len(records),
        }
        write_atomically(
            os.path.join(self.output_dir, "summary.json"), json.dumps(summary, indent=2)
        )
        logger.info(
            f"Pseudo-labels: {summary['kept']} of {summary['frames']} frames kept; failed per filter: {summary['failed']}"
        )
        return summary


def _record(video, index, file_name, prediction, K, height, width):
    """Pseudo-label dataset record of one kept frame (docs/design.md, "Dataset records")."""
    joints3d = np.asarray(prediction["joints3d"])
    hand = {
        "category_id": HAND_CLASS,
        "bbox": _jsonable(prediction["hand_box"]),
        "bbox_mode": int(BoxMode.XYXY_ABS),
        "joints2d": _jsonable(prediction["joints2d"]),
        "joints3d": _jsonable(joints3d - joints3d[:1]),
    }
    obj = {
        "category_id": OBJECT_CLASS,
        "bbox": _jsonable(prediction["object_box"]),
        "bbox_mode": int(BoxMode.XYXY_ABS),
    }
    return {
        "file_name": file_name,
        "image_id": f"{video}/{index}",
        "height": height,
        "width": width,
        "sequence": video,
        "frame_index": index,
        "camera_K": K,
        "is_pseudo_label": True,
        "annotations": [hand, obj],
    }


def _jsonable(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def _score_table(results):
    """CSV text: video, frame_index, predicted, every score and verdict column, kept."""
    skip = {"frame_index", "predicted", "kept", "prediction"}
    columns = sorted(
        {k for result in results for frame in result["frames"] for k in frame if k not in skip}
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["video", "frame_index", "predicted"] + columns + ["kept"])
    for result in results:
        for frame in result["frames"]:
            writer.writerow(
                [result["video"], frame["frame_index"], int(frame["predicted"])]
                + [_csv_value(frame.get(c, "")) for c in columns]
                + [int(frame["kept"])]
            )
    return out.getvalue()


def _csv_value(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
