"""Pseudo-label generation with a scripted teacher: filtering, outputs, resume after a kill."""

import csv
import json

import cv2
import numpy as np
import pytest
from detectron2.config import get_cfg
from hand_skeletons import rotating_hand

from handobj_d2.config import add_handobj_config
from handobj_d2.data.video import find_videos
from handobj_d2.semi.pseudo_labels import PseudoLabelGenerator

K = np.array([[300.0, 0, 80], [0, 300.0, 60], [0, 0, 1]])
JUMP_FRAME, NO_HAND_FRAME = 4, 6


def _make_videos(root):
    """Video 'clip' (mp4) and frame folder 'folder', 10 frames of 160x120 each."""
    writer = cv2.VideoWriter(
        str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120)
    )
    (root / "folder").mkdir()
    for i in range(10):
        frame = np.full((120, 160, 3), 10 * i, np.uint8)
        writer.write(frame)
        cv2.imwrite(str(root / "folder" / f"{i:03d}.png"), frame)
    writer.release()


class ScriptedTeacher:
    """Predictions of a hand turning smoothly 0.4 m away, except a pose jump at JUMP_FRAME
    and no hand at NO_HAND_FRAME; optionally raises after some calls (a kill)."""

    def __init__(self, fail_after_calls=None):
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def __call__(self, images, frame_indices, video):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        out = []
        for index in frame_indices:
            if index == NO_HAND_FRAME:
                out.append(None)
                continue
            joints3d = rotating_hand(index)
            if index == JUMP_FRAME:
                joints3d = joints3d[:, [1, 0, 2]]  # fingers suddenly point elsewhere
            uv = (joints3d + [0, 0, 0.4]) @ K.T
            joints2d = uv[:, :2] / uv[:, 2:]
            box = np.concatenate([joints2d.min(0), joints2d.max(0)])
            out.append(
                {
                    "hand_box": box,
                    "hand_score": 0.95,
                    "object_box": box + 5,
                    "object_score": 0.9,
                    "joints2d": joints2d,
                    "joints3d": joints3d,
                    "mano_shape": np.zeros(10),
                }
            )
        return out


@pytest.fixture
def cfg():
    cfg = add_handobj_config(get_cfg())
    cfg.SEMI.BATCH_SIZE = 3
    # A flat hand seen face-on: weak perspective is exact, keep the default 2D-3D threshold.
    return cfg


def test_outputs_list_kept_frames_scores_and_filter_counts(tmp_path, cfg):
    _make_videos(tmp_path)
    sources = find_videos([str(tmp_path / "clip.mp4"), str(tmp_path / "folder")])
    summary = PseudoLabelGenerator(cfg, ScriptedTeacher(), str(tmp_path / "out")).run(sources)

    records = json.loads((tmp_path / "out" / "pseudo_labels.json").read_text())
    # Per video: 10 frames, one without a hand, one with a pose jump -> 8 kept.
    assert (
        summary["frames"] == 20
        and summary["frames_with_prediction"] == 18
        and summary["kept"] == 16
    )
    assert summary["failed"]["temporal"] == 2 and summary["failed"]["interaction"] == 0
    kept = sorted((r["sequence"], r["frame_index"]) for r in records)
    expected = sorted(
        (v, i)
        for v in ("clip", "folder")
        for i in range(10)
        if i not in (JUMP_FRAME, NO_HAND_FRAME)
    )
    assert kept == expected
    clip_frame = next(r for r in records if r["sequence"] == "clip")
    assert (tmp_path / "out" / clip_frame["file_name"]).is_file()  # decoded frames saved
    folder_frame = next(r for r in records if r["sequence"] == "folder" and r["frame_index"] == 2)
    assert folder_frame["file_name"] == str(tmp_path / "folder" / "002.png")  # referenced in place
    hand = folder_frame["annotations"][0]
    np.testing.assert_allclose(hand["joints3d"], rotating_hand(2), atol=1e-9)
    assert folder_frame["camera_K"] == [[160.0, 0.0, 80.0], [0.0, 160.0, 60.0], [0.0, 0.0, 1.0]]

    with open(tmp_path / "out" / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    jump = next(r for r in rows if r["video"] == "clip" and r["frame_index"] == str(JUMP_FRAME))
    assert (
        jump["pass_temporal"] == "0"
        and jump["kept"] == "0"
        and float(jump["temporal_distance"]) > 0.01
    )
    no_hand = next(
        r for r in rows if r["video"] == "folder" and r["frame_index"] == str(NO_HAND_FRAME)
    )
    assert no_hand["predicted"] == "0" and no_hand["residual_2d3d"] == ""


def test_distillation_mode_keeps_every_predicted_frame(tmp_path, cfg):
    _make_videos(tmp_path)
    cfg.SEMI.MODE = "distillation"
    summary = PseudoLabelGenerator(cfg, ScriptedTeacher(), str(tmp_path / "out")).run(
        find_videos([str(tmp_path / "folder")])
    )
    assert summary["kept"] == 9 and summary["filters"] == []


def test_killed_run_resumes_to_the_same_output(tmp_path, cfg):
    _make_videos(tmp_path)
    sources = find_videos([str(tmp_path / "clip.mp4"), str(tmp_path / "folder")])
    PseudoLabelGenerator(cfg, ScriptedTeacher(), str(tmp_path / "once")).run(sources)

    # Killed during the second video: 10 frames in batches of 3 = 4 calls per video.
    with pytest.raises(KeyboardInterrupt):
        PseudoLabelGenerator(cfg, ScriptedTeacher(fail_after_calls=6), str(tmp_path / "twice")).run(
            sources
        )
    assert (tmp_path / "twice" / "videos" / "clip.json").is_file()
    assert not (tmp_path / "twice" / "videos" / "folder.json").exists()
    assert not (tmp_path / "twice" / "pseudo_labels.json").exists()
    rerun_teacher = ScriptedTeacher()
    PseudoLabelGenerator(cfg, rerun_teacher, str(tmp_path / "twice")).run(sources)
    assert rerun_teacher.calls == 4  # only the unfinished video was predicted again
    for name in (
        "pseudo_labels.json",
        "scores.csv",
        "summary.json",
        "videos/clip.json",
        "videos/folder.json",
    ):
        assert (tmp_path / "once" / name).read_bytes() == (
            tmp_path / "twice" / name
        ).read_bytes(), name
    # A third run predicts nothing and changes nothing.
    idle = ScriptedTeacher(fail_after_calls=0)
    PseudoLabelGenerator(cfg, idle, str(tmp_path / "twice")).run(sources)
    assert (tmp_path / "once" / "pseudo_labels.json").read_bytes() == (
        tmp_path / "twice" / "pseudo_labels.json"
    ).read_bytes()
