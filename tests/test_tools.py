"""The tools as a user drives them: train_net (kill, resume, eval-only), the predictor and the
demo (images, a folder, a video; bad input), on the tiny synthetic set and the tiny config."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh

from handobj_d2.engine import HandObjectPredictor, setup_cfg
from handobj_d2.engine.demo import DemoInputError, run_demo
from handobj_d2.utils.io import read_image

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "synthetic" / "handobj_tiny.yaml")
# A few iterations of the tiny model on CPU: checkpoints every 2 iterations.
TRAIN_OPTS = ["SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.STEPS", "(5,)",
              "SOLVER.IMS_PER_BATCH", "2", "INPUT.HANDOBJ.CROP_SIZE", "64"]  # fmt: skip


def _env(datasets_root):
    env = dict(os.environ, HANDOBJ_DATASETS=str(datasets_root), PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _train_net(datasets_root, output, *extra):
    """Start tools/train_net.py; its output goes to ``output``/console.txt (a pipe would fill
    up and block the process)."""
    command = [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG,
               *extra, "OUTPUT_DIR", str(output), *TRAIN_OPTS]  # fmt: skip
    os.makedirs(output, exist_ok=True)
    with open(output / "console.txt", "w") as console:
        return subprocess.Popen(command, env=_env(datasets_root), cwd=REPO, stdout=console,
                                stderr=subprocess.STDOUT)  # fmt: skip


def _console(output):
    return (output / "console.txt").read_text()


def test_train_kill_resume_and_eval_only(tiny_synthetic_root, tmp_path):
    datasets_root, output = tiny_synthetic_root.parent, tmp_path / "train"
    process = _train_net(datasets_root, output)
    # Kill once the checkpoint after iteration 4 (0-based 3) is complete: Detectron2 names the
    # last complete checkpoint in last_checkpoint after writing it.
    last = output / "last_checkpoint"
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if last.exists() and last.read_text().strip() == "model_0000003.pth":
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.read_text().strip() == "model_0000003.pth", _console(output)[-3000:]
    assert not (output / "model_final.pth").exists()

    assert _train_net(datasets_root, output, "--resume").wait() == 0, _console(output)[-3000:]
    assert "Starting training from iteration 4" in _console(output)
    assert (output / "model_final.pth").exists()
    assert list(output.glob("events.out.tfevents.*")), "no TensorBoard events written"

    evaluation = output / "eval"
    weights = str(output / "model_final.pth")
    code = _train_net(datasets_root, evaluation, "--eval-only", "MODEL.WEIGHTS", weights).wait()
    assert code == 0, _console(evaluation)[-3000:]
    assert "copypaste: Task: hand" in _console(evaluation)
    pred = json.loads((evaluation / "inference" / "synthetic_eval" / "pred.json").read_text())
    assert np.asarray(pred[0]).shape == (4, 21, 3) and np.asarray(pred[1]).shape == (4, 778, 3)


@pytest.fixture(scope="module")
def predictor():
    return HandObjectPredictor(setup_cfg(CONFIG, ["MODEL.WEIGHTS", ""]))


def _eval_image(root):
    return sorted((root / "evaluation").glob("*/rgb/*.png"))[0]


def test_predictor_returns_every_documented_field(predictor, tiny_synthetic_root):
    image = read_image(str(_eval_image(tiny_synthetic_root)))
    height, width = image.shape[:2]
    hand_box, object_box = [30.0, 20.0, 90.0, 80.0], [60.0, 40.0, 120.0, 100.0]
    points = np.random.default_rng(0).uniform(-0.05, 0.05, (21, 3))
    output = predictor(image, hand_box=hand_box, object_box=object_box, control_points3d=points)
    pairs = output["instances"]
    expected = {
        "scores": (1,), "pred_classes": (1,), "pred_has_object": (1,), "object_scores": (1,),
        "pred_joints2d": (1, 21, 2),
        "pred_joints2d_conf": (1, 21), "pred_mano_pose": (1, 48), "pred_mano_shape": (1, 10),
        "pred_joints3d": (1, 21, 3), "pred_vertices": (1, 778, 3),
        "pred_control_points2d": (1, 21, 2), "pred_control_points_conf": (1, 21),
        "pred_object_R": (1, 3, 3), "pred_object_t": (1, 3), "pred_object_pose_valid": (1,),
        "pred_root3d": (1, 3),
    }  # fmt: skip
    for name, shape in expected.items():
        assert tuple(pairs.get(name).shape) == shape, name
    assert pairs.image_size == (height, width)
    # Given boxes come back unchanged, in the image's pixels, with score 1.
    assert np.allclose(pairs.pred_boxes.tensor[0].numpy(), hand_box, atol=1e-3)
    assert np.allclose(pairs.pred_object_boxes.tensor[0].numpy(), object_box, atol=1e-3)
    assert float(pairs.scores[0]) == 1.0 and pairs.pred_has_object.tolist() == [True]
    # The model's wrist is its origin; confidences are probabilities; rotations orthonormal.
    assert torch.allclose(pairs.pred_joints3d[0, 0], torch.zeros(3), atol=1e-6)
    assert ((pairs.pred_joints2d_conf >= 0) & (pairs.pred_joints2d_conf <= 1)).all()
    R = pairs.pred_object_R[0].double()
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-4)
    # Without boxes the detector runs on the whole image first.
    detected = predictor(image)
    assert detected["detections"].image_size == (height, width)
    assert detected["instances"].pred_root3d.shape[1:] == (3,)
    # A given hand box alone: a hand holding nothing, the same hand as with the object box
    # when the crop is the same (the object box inside the hand box).
    inner = [40.0, 30.0, 80.0, 70.0]
    alone = predictor(image, hand_box=hand_box, control_points3d=points)["instances"]
    held = predictor(image, hand_box=hand_box, object_box=inner, control_points3d=points)
    assert len(alone) == 1 and alone.pred_has_object.tolist() == [False]
    assert alone.pred_object_pose_valid.tolist() == [False]
    assert torch.isnan(alone.pred_object_t).all() and torch.isnan(alone.pred_object_R).all()
    assert np.allclose(alone.pred_boxes.tensor[0].numpy(), hand_box, atol=1e-3)
    torch.testing.assert_close(alone.pred_joints3d, held["instances"].pred_joints3d)
    torch.testing.assert_close(alone.pred_root3d, held["instances"].pred_root3d)


def test_demo_on_image_folder_and_video(tiny_synthetic_root, tmp_path):
    image = _eval_image(tiny_synthetic_root)
    folder = tmp_path / "frames"
    folder.mkdir()
    for path in sorted((tiny_synthetic_root / "evaluation").glob("*/rgb/*.png"))[:2]:
        (folder / path.name.replace(".png", "_copy.png")).write_bytes(path.read_bytes())
    video = sorted((tiny_synthetic_root / "videos").glob("*.mp4"))[0]
    output = tmp_path / "demo"
    # The untrained model finds a hand or not depending on its random weights: fix them, so the
    # outcome does not depend on which tests ran before.
    torch.manual_seed(0)
    inputs = [str(image), str(folder), str(video)]
    assert run_demo(setup_cfg(CONFIG, []), inputs, str(output), mesh_format="ply") == []
    drawn = cv2.imread(str(output / f"{image.stem}.jpg"))
    original = cv2.imread(str(image))
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original).mean() > 1.0  # something was drawn
    assert len(list(output.glob("*_copy.jpg"))) == 2
    capture = cv2.VideoCapture(str(output / f"{video.stem}.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()
    entries = json.loads((output / "predictions.json").read_text())
    assert len(entries) == 1 + 2 + 6
    assert [e["frame"] for e in entries[3:]] == list(range(6))
    pair = entries[0]["pairs"][0]
    assert np.asarray(pair["joints3d_camera"]).shape == (21, 3)
    mesh = trimesh.load(output / entries[0]["mesh_files"][0], process=False)
    assert mesh.vertices.shape == (778, 3) and mesh.faces.shape == (1538, 3)
    # The saved mesh is the camera-frame hand: its wrist-relative shape + root3d.
    assert np.allclose(mesh.vertices.mean(0)[2], pair["root3d"][2], atol=0.1)


def _demo(datasets_root, *args):
    """Run tools/demo.py; returns (exit status, stderr)."""
    command = [sys.executable, str(REPO / "tools" / "demo.py"), *args]
    result = subprocess.run(command, env=_env(datasets_root), cwd=REPO, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    return result.returncode, result.stderr


def test_demo_with_a_hand_box_and_no_object_box(tiny_synthetic_root, tmp_path):
    """tools/demo.py --hand-box without --object-box: a hand holding nothing, no object in
    predictions.json (strict JSON: no NaN)."""
    image = _eval_image(tiny_synthetic_root)
    hand_box = [30.0, 20.0, 90.0, 80.0]
    code, err = _demo(tiny_synthetic_root.parent, "--input", str(image), "--output",
                      str(tmp_path / "out"), "--hand-box", *map(str, hand_box))  # fmt: skip
    assert code == 0, err
    text = (tmp_path / "out" / "predictions.json").read_text()
    (entry,) = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    (pair,) = entry["pairs"]
    np.testing.assert_allclose(pair["hand_box"], hand_box, atol=1e-3)
    assert pair["has_object"] is False and pair["object_box"] is None
    assert pair["object_R"] is None and pair["object_pose_valid"] is False
    assert np.asarray(pair["joints3d_camera"]).shape == (21, 3)
    code, err = _demo(tiny_synthetic_root.parent, "--input", str(image), "--output",
                      str(tmp_path / "bad"), "--object-box", *map(str, hand_box))  # fmt: skip
    assert code == 1 and "--object-box needs --hand-box" in err


def test_demo_bad_input_exits_with_a_message(tiny_synthetic_root, tmp_path):
    cfg = setup_cfg(CONFIG, [])
    with pytest.raises(DemoInputError, match="input not found"):
        run_demo(cfg, [str(tmp_path / "nope.jpg")], str(tmp_path))
    code, err = _demo(tiny_synthetic_root.parent, "--input", str(tmp_path / "nope.jpg"),
                      "--output", str(tmp_path))  # fmt: skip
    assert code == 1
    assert "input not found" in err and "Traceback" not in err

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(DemoInputError, match="broken.mp4"):
        run_demo(cfg, [str(broken)], str(tmp_path / "out"))

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="corrupt.png: cannot decode"):
        run_demo(cfg, [str(corrupt)], str(tmp_path / "out"))

    # No detection passes an impossible score threshold: "no hand", exit status 2.
    image = _eval_image(tiny_synthetic_root)
    no_detection = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.01"]
    code, err = _demo(tiny_synthetic_root.parent, "--input", str(image), "--output",
                      str(tmp_path / "nohand"), *no_detection)  # fmt: skip
    assert code == 2
    assert f"no hand found in {image}" in err
    assert (tmp_path / "nohand" / f"{image.stem}.jpg").exists()
    nohand = setup_cfg(CONFIG, no_detection)
    assert run_demo(nohand, [str(image)], str(tmp_path / "nohand")) == [str(image)]


def test_run_demo_runs_every_stage_and_resumes(tmp_path):
    """The main job (make demo) at toy size: every stage runs, summary.json lists what exists
    and what the trainings did, and a rerun reads the finished stages back instead of redoing
    them. The teacher trains a fixed 10 iterations; the student a 3 s budget, which after the
    speed measurement leaves nothing, so it gets the minimum of 10. Filters reduced to the
    interaction check so that a 10-iteration teacher still yields pseudo-labels."""
    command = [sys.executable, str(REPO / "tools" / "run_demo.py"), "--output", str(tmp_path / "out"),
               "--train", "8", "--eval", "4", "--videos", "1", "--frames-per-video", "6",
               "--image-size", "160", "120", "--iters", "10", "--student-seconds", "3",
               "--demo-images", "2", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
               "SEMI.FILTER.NAMES", "('interaction',)", "INPUT.HANDOBJ.CROP_SIZE", "64"]  # fmt: skip
    env = _env(tmp_path / "datasets")
    first = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["stages"]) == {"untrained", "trained", "pseudo_labels", "self_trained"}
    assert "hand/MPJPE_mm" in summary["stages"]["trained"]
    assert summary["stages"]["pseudo_labels"]["kept"] > 0
    assert "hand/MPJPE_mm" in summary["stages"]["self_trained"]
    teacher, student = summary["training"]["teacher"], summary["training"]["student"]
    assert teacher["iterations"] == 10 and "budget_seconds" not in teacher
    assert student["iterations"] == 10 and student["budget_seconds"] == 3
    assert student["measured_seconds_per_iteration"] > 0
    for record in (teacher, student):
        assert record["seconds"] > 0
        assert record["seconds_per_iteration"] == pytest.approx(record["seconds"] / 10, rel=1e-2)
    assert (tmp_path / "out" / "student" / "schedule.json").exists()
    assert list(summary["stage_seconds"]) == [
        "synthetic data", "untrained model: evaluation", "teacher: training",
        "teacher: evaluation", "pseudo-labels", "student: training", "student: evaluation",
        "demo images",
    ]  # fmt: skip
    assert summary["total_seconds"] == pytest.approx(sum(summary["stage_seconds"].values()), 0.01)
    assert "[3/8] teacher: training: starting" in first.stdout + first.stderr
    for path in summary["artefacts"].values():
        assert os.path.exists(path), path
    assert len(list(Path(summary["artefacts"]["demo_images"]).glob("*.jpg"))) == 2

    second = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert second.returncode == 0
    assert "exists, skipping training" in second.stdout + second.stderr
    assert "already made, reusing it" in second.stdout + second.stderr  # the synthetic set
    rerun = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert rerun["stages"] == summary["stages"]
    assert rerun["training"] == summary["training"]  # read back, not the rerun's seconds
