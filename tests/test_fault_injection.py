"""Fault injection, small: kill -9 inside the long jobs (training, pseudo-labels, the synthetic
generator) and rerun; corrupt training data mid-training; a full or read-only disk; malformed
inputs. The long version with random kills: dev/fault_injection.py campaign."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog

from handobj_d2.data import build_hand_object_train_loader
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
from handobj_d2.data.datasets import load_ho3d, register_ho3d
from handobj_d2.data.synthetic import generate_dataset
from handobj_d2.data.video import find_videos
from handobj_d2.engine import HandObjectTrainer, setup_cfg
from handobj_d2.engine.trainer import AtomicCheckpointer
from handobj_d2.utils.io import read_image
from tools import generate_pseudo_labels
from tools.evaluate_ho3d import main as evaluate_ho3d

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "synthetic" / "handobj_tiny.yaml")
INJECT = [sys.executable, str(REPO / "dev" / "fault_injection.py"), "inject"]


def _env(datasets_root=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if datasets_root is not None:
        env["HANDOBJ_DATASETS"] = str(datasets_root)
    return env


def _run(command, log, env):
    with open(log, "a") as console:
        return subprocess.run(command, env=env, cwd=REPO, stdout=console, stderr=subprocess.STDOUT)


def _files(root):
    """{relative path: bytes} of every file under ``root``."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _temporary(root):
    return sorted(str(p) for p in root.rglob(".tmp-*"))


# --- kill -9 and rerun ----------------------------------------------------------------------


def test_training_killed_before_its_final_checkpoint_is_renamed_resumes_to_the_same_weights(
    tiny_synthetic_root, tmp_path
):
    """4 iterations, checkpoints after iterations 2 and 4 (model_0000001, model_0000003), then
    model_final. SIGKILL just before model_final.pth's rename: the checkpoint is whole in a
    temporary file, model_final.pth absent, last_checkpoint names model_0000003.pth. Detectron2
    alone would never write model_final.pth on --resume (no iteration left to run)."""
    output = tmp_path / "train"
    output.mkdir()
    log = output / "console.txt"
    train = [str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG]
    opts = ["OUTPUT_DIR", str(output), "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
            "SOLVER.STEPS", "(3,)", "SOLVER.IMS_PER_BATCH", "2", "INPUT.HANDOBJ.CROP_SIZE", "64",
            "DATASETS.TEST", "()", "SEED", "0"]  # fmt: skip
    env = _env(tiny_synthetic_root.parent)
    killed = _run([*INJECT, "--kill-before-commit", "*/model_final.pth", "1", "--", *train, *opts],
                  log, env)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert not (output / "model_final.pth").exists()
    assert (output / "last_checkpoint").read_text() == "model_0000003.pth"
    assert len(_temporary(output)) == 1  # the whole model_final, never renamed
    last = torch.load(output / "model_0000003.pth", map_location="cpu", weights_only=False)
    assert last["iteration"] == 3

    resumed = _run([sys.executable, *train, "--resume", *opts], log, env)
    assert resumed.returncode == 0, log.read_text()[-3000:]
    assert "Starting training from iteration 4" in log.read_text()
    assert _temporary(output) == []
    final = torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["model"].keys() == last["model"].keys()
    for name, value in last["model"].items():
        assert torch.equal(final["model"][name], value), name


def test_checkpointer_leaves_the_last_checkpoint_whole_on_a_full_or_read_only_disk(
    tmp_path, monkeypatch
):
    model = torch.nn.Linear(3, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    saved = (tmp_path / "model_0000001.pth").read_bytes()
    real_fdopen = os.fdopen

    def disk_full(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)

        def write(data):  # half the bytes reach the disk, then it is full
            type(f).write(f, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        f.write = write
        return f

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", dst)

    for patch in (("fdopen", disk_full), ("replace", read_only)):
        with monkeypatch.context() as m:
            m.setattr(os, *patch)
            torch.nn.init.constant_(model.weight, 1.0)
            with pytest.raises(OSError) as error:
                checkpointer.save("model_0000002")
        assert error.value.errno in (errno.ENOSPC, errno.EROFS)
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "last_checkpoint",
            "model_0000001.pth",
        ]
        assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
        assert (tmp_path / "model_0000001.pth").read_bytes() == saved
    DetectionCheckpointer(torch.nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)


def test_trainer_checkpoints_through_the_atomic_checkpointer(tiny_synthetic_root, tmp_path):
    if "faults_tiny_train" not in DatasetCatalog.list():
        register_ho3d("faults_tiny_train", str(tiny_synthetic_root), "train", "v2")
    cfg = setup_cfg(CONFIG, ["SOLVER.IMS_PER_BATCH", "2", "INPUT.HANDOBJ.CROP_SIZE", "64",
                             "DATASETS.TRAIN", "('faults_tiny_train',)", "DATASETS.TEST", "()",
                             "OUTPUT_DIR", str(tmp_path)])  # fmt: skip
    trainer = HandObjectTrainer(cfg)
    assert type(trainer.checkpointer) is AtomicCheckpointer
    periodic = [h for h in trainer._hooks if hasattr(h, "checkpointer")]
    assert periodic and all(h.checkpointer is trainer.checkpointer for h in periodic)


def test_synthetic_generator_killed_then_rerun_is_byte_identical(tmp_path):
    """SIGKILL just before the second video's mp4 is renamed into place (every labeled frame and
    the first video written); the same command finishes the set, keeping what was written."""
    options = ["--train", "4", "--eval", "2", "--videos", "2", "--frames-per-video", "2",
               "--frames-per-sequence", "2", "--image-size", "64", "48"]  # fmt: skip
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    tool = str(REPO / "tools" / "make_synthetic_dataset.py")
    log = tmp_path / "console.txt"
    killed = _run([*INJECT, "--kill-before-commit", "*/videos/*.mp4", "2", "--", tool,
                   "--output", str(resumed), *options], log, _env())  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert json.loads((resumed / "synthetic.json").read_text())["complete"] is False
    assert (resumed / "videos" / "default_video_000.mp4").is_file()
    assert not (resumed / "videos" / "default_video_001.mp4").exists()
    assert _temporary(resumed)  # the second video's mp4, whole but not renamed

    from tools.make_synthetic_dataset import main as make_synthetic_dataset

    assert make_synthetic_dataset(["--output", str(resumed), *options]) == 0
    assert make_synthetic_dataset(["--output", str(reference), *options]) == 0
    assert _temporary(resumed) == []
    expected, found = _files(reference), _files(resumed)
    assert found.keys() == expected.keys()
    assert [k for k in expected if expected[k] != found[k]] == []
    assert (reference / "train.txt").read_text().split() == [
        "default_train_000/0000", "default_train_000/0001",
        "default_train_001/0000", "default_train_001/0001",
    ]  # fmt: skip


@pytest.fixture
def teacher_and_videos(tiny_synthetic_root, tmp_path):
    """A random-weight teacher checkpoint (seeded), three 2-frame frame folders and a boxes file
    giving every frame a hand and an object."""
    torch.manual_seed(0)
    model = HandObjectTrainer.build_model(setup_cfg(CONFIG, ["MODEL.WEIGHTS", ""]))
    DetectionCheckpointer(model, str(tmp_path)).save("teacher")
    frames = sorted((tiny_synthetic_root / "video_frames").glob("*/*.png"))
    videos = tmp_path / "videos"
    for index in range(3):
        folder = videos / f"clip{index}"
        folder.mkdir(parents=True)
        for path in frames[2 * index : 2 * index + 2]:
            shutil.copy(path, folder / path.name)
    pair = {"hand": [20, 20, 100, 100, 0.9], "object": [60, 40, 140, 110, 0.8]}
    boxes = {f"clip{index}": {"0": pair, "1": pair} for index in range(3)}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    return str(tmp_path / "teacher.pth"), str(videos), str(tmp_path / "boxes.json")


def test_pseudo_labels_killed_then_rerun_are_byte_identical(teacher_and_videos, tmp_path):
    """SIGKILL just before the second video's result is renamed into place; the rerun predicts
    that video and the third and merges: every file equal to an uninterrupted run's, every
    frame once."""
    weights, videos, boxes = teacher_and_videos
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"

    def args(output):
        return ["--config-file", CONFIG, "--videos", videos, "--output", str(output),
                "--boxes", boxes, "MODEL.WEIGHTS", weights, "SEMI.MODE", "distillation",
                "SEMI.BATCH_SIZE", "2", "INPUT.HANDOBJ.CROP_SIZE", "64",
                "SEMI.DISTILLATION_SCALES", "[1.0]", "SEMI.DISTILLATION_ROTATIONS", "[0.0]"]  # fmt: skip

    log = tmp_path / "console.txt"
    tool = str(REPO / "tools" / "generate_pseudo_labels.py")
    killed = _run([*INJECT, "--kill-before-commit", "*/videos/*.json", "2", "--", tool,
                   *args(resumed)], log, _env())  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert [p.name for p in (resumed / "videos").glob("*.json")] == ["clip0.json"]
    assert len(_temporary(resumed)) == 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed process: the same floating-point sums
    try:
        generate_pseudo_labels.cli(args(resumed))
        generate_pseudo_labels.cli(args(reference))
    finally:
        torch.set_num_threads(threads)
    assert _temporary(resumed) == []
    # log.txt and config.yaml (it names the output folder) are the runs' own.
    expected, found = (
        {k: v for k, v in _files(root).items() if k not in ("log.txt", "config.yaml")}
        for root in (reference, resumed)
    )
    assert found.keys() == expected.keys()
    assert [k for k in expected if expected[k] != found[k]] == []
    # Distillation keeps every frame with boxes: each of the 6 frames exactly once.
    records = json.loads((resumed / "pseudo_labels.json").read_text())
    assert sorted(r["image_id"] for r in records) == [
        f"clip{v}/{f}" for v in range(3) for f in (0, 1)
    ]


# --- bad training data, found mid-training -----------------------------------------------


@pytest.fixture
def damaged_records(tiny_synthetic_root, tmp_path):
    """The tiny set's 8 training records, loaded; then (as if mid-training) one image truncated
    and one record's 2D joints made NaN. Returns (records, truncated image, NaN record's image)."""
    root = tmp_path / "synthetic"
    shutil.copytree(tiny_synthetic_root, root)
    records = load_ho3d(str(root), "train")
    truncated = records[2]["file_name"]
    data = Path(truncated).read_bytes()
    Path(truncated).write_bytes(data[: len(data) // 2])
    hand = next(a for a in records[5]["annotations"] if "joints2d" in a)
    hand["joints2d"] = np.full_like(np.asarray(hand["joints2d"], float), np.nan).tolist()
    return records, truncated, records[5]["file_name"]


def _loader(records, *opts):
    """The project's training loader over ``records`` (batches of 2) and its mapper."""
    name = f"faults_damaged_{id(records)}_{len(DatasetCatalog.list())}"
    DatasetCatalog.register(name, lambda: records)
    cfg = setup_cfg(CONFIG, ["INPUT.HANDOBJ.CROP_SIZE", "32", "DATASETS.TRAIN", f"('{name}',)",
                             "SOLVER.IMS_PER_BATCH", "2", *opts])  # fmt: skip
    mapper = HandObjectDatasetMapper(cfg, True)
    return mapper, iter(build_hand_object_train_loader(cfg, mapper))


def test_bad_records_fail_with_the_file_named_by_default(damaged_records):
    records, truncated, nan_record = damaged_records
    mapper, batches = _loader(records)
    with pytest.raises(ValueError) as error:
        for _ in range(4):  # the first epoch: every record once
            next(batches)
    assert truncated in str(error.value) or nan_record in str(error.value)
    with pytest.raises(ValueError, match="cannot decode"):
        mapper(dict(records[2]))
    with pytest.raises(ValueError, match=f"{nan_record}: .*joints2d"):
        mapper(dict(records[5]))


def test_bad_records_are_skipped_counted_and_logged_under_the_skip_policy(damaged_records, caplog):
    records, truncated, nan_record = damaged_records
    mapper, batches = _loader(records, "DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY", "skip")
    seen = [d["image_id"] for _ in range(6) for d in next(batches)]
    good = {r["image_id"] for i, r in enumerate(records) if i not in (2, 5)}
    assert set(seen) <= good and len(seen) == 12
    assert sorted(mapper.skipped) == sorted([truncated, nan_record])
    assert "cannot decode" in mapper.skipped[truncated]  # a truncated PNG
    assert "joints2d" in mapper.skipped[nan_record]
    logged = [
        r.getMessage() for r in caplog.records if "Skipping bad training record" in r.getMessage()
    ]
    assert len(logged) == 2 and any(truncated in m for m in logged)

    mapper, batches = _loader(records, "DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY", "skip",
                              "DATALOADER.HANDOBJ.MAX_BAD_SAMPLES", "1")  # fmt: skip
    with pytest.raises(RuntimeError, match="2 bad training records, more than .*=1; the last: "):
        for _ in range(6):
            next(batches)
    # Evaluation never skips: a hole in the evaluation set would go unnoticed.
    cfg = setup_cfg(CONFIG, ["DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY", "skip"])
    with pytest.raises(ValueError, match="cannot decode"):
        HandObjectDatasetMapper(cfg, False)(dict(records[2]))
    with pytest.raises(ValueError, match="BAD_SAMPLE_POLICY must be 'fail' or 'skip'"):
        HandObjectDatasetMapper(setup_cfg(CONFIG, ["DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY", "x"]))


def test_truncated_jpeg_is_an_error_not_a_grey_image(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), image)
    assert read_image(str(path)).shape == (48, 64, 3)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    assert cv2.imread(str(path)) is not None  # imread decodes it, grey where data is missing
    with pytest.raises(ValueError, match="frame.jpg: cannot decode the image"):
        read_image(str(path))


# --- full or unwritable disk: a clear error, nothing half-written ----------------------------


def test_synthetic_generator_on_a_full_disk_leaves_whole_files_and_then_resumes(
    tiny_synthetic_root, tmp_path, monkeypatch
):
    """The disk fills up in the third frame: an ENOSPC error, no partial file; once there is room,
    the same call finishes the set byte-identical to the session's tiny set (same arguments)."""
    root = tmp_path / "synthetic"
    real_fdopen, opened = os.fdopen, []

    def fills_up(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        opened.append(f)
        if len(opened) > 36:  # the summary, 28 object-model files, then frames' rgb/seg/meta

            def write(data):
                raise OSError(errno.ENOSPC, "No space left on device")

            f.write = write
        return f

    options = dict(train=8, evaluation=4, videos=1, frames_per_video=6, image_size=(160, 120),
                   seed=0, progress=False)  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", fills_up)
        with pytest.raises(OSError) as error:
            generate_dataset(str(root), **options)
    assert error.value.errno == errno.ENOSPC
    assert _temporary(root) == []
    expected = _files(tiny_synthetic_root)
    written = _files(root)
    assert written and all(expected[k] == v for k, v in written.items() if k != "synthetic.json")
    generate_dataset(str(root), **options)
    assert _files(root) == expected


def test_tools_name_an_unwritable_output_folder(teacher_and_videos, tmp_path, capsys):
    weights, videos, _ = teacher_and_videos
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        generate_pseudo_labels.cli(["--config-file", CONFIG, "--videos", videos, "--output",
                                    str(blocker / "out"), "MODEL.WEIGHTS", weights])  # fmt: skip
    assert str(exit_.value.code).startswith("error: ") and str(blocker) in str(exit_.value.code)

    from tools.make_synthetic_dataset import main as make_synthetic_dataset

    with pytest.raises(SystemExit) as exit_:
        make_synthetic_dataset(["--output", str(blocker / "out"), "--train", "1", "--eval", "0",
                                "--videos", "0", "--image-size", "64", "48"])  # fmt: skip
    assert str(exit_.value.code).startswith("error: ") and str(blocker) in str(exit_.value.code)


# --- malformed inputs not covered elsewhere -------------------------------------------------


def test_malformed_ground_truth_and_prediction_files_are_named(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "evaluation_xyz.json").write_text(json.dumps(np.zeros((1, 21, 3)).tolist()))
    (folder / "evaluation_verts.json").write_text("[[[0.1, 0.2")
    (folder / "pred.json").write_text(json.dumps([np.zeros((1, 21, 3)).tolist()] * 2))
    assert evaluate_ho3d([str(folder), str(tmp_path / "out")]) == 1
    assert "evaluation_verts.json: not valid JSON" in capsys.readouterr().err

    (folder / "evaluation_verts.json").write_text(json.dumps(np.zeros((1, 778, 3)).tolist()))
    (folder / "evaluation_xyz.json").write_text('{"joints": 1}')
    assert evaluate_ho3d([str(folder), str(tmp_path / "out")]) == 1
    assert "evaluation_xyz.json: joints must be a non-empty list" in capsys.readouterr().err


def test_a_video_with_no_readable_frame_is_named(tmp_path):
    empty = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    writer.release()  # a container with no frame
    assert empty.stat().st_size > 0
    with pytest.raises(ValueError, match="empty.mp4: OpenCV cannot open this video"):
        find_videos([str(empty)])
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (source,) = find_videos([str(folder)])
    with pytest.raises(ValueError, match="000.png: cannot decode"):
        list(source)
