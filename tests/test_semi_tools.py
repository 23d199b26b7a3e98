"""The teacher adaptor (handobj_d2/semi/teacher.py) and tools/generate_pseudo_labels.py."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Instances
from model_inputs import FIXTURE_MANO

from handobj_d2.data.build import pseudo_label_datasets
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
from handobj_d2.data.datasets.pseudo_labels import register_pseudo_label_dataset
from handobj_d2.engine import HandObjectConfigError, setup_cfg
from handobj_d2.engine.predictor import HandObjectPredictor
from handobj_d2.engine.trainer import initial_weights
from handobj_d2.evaluation.statistics import pooled_difference
from handobj_d2.semi import experiment as semi_experiment
from handobj_d2.semi.generation import check_inputs
from handobj_d2.semi.teacher import Teacher, distillation_transforms, load_boxes_file
from tools import run_semi_synthetic_experiment as experiment_tool

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs/synthetic/handobj_tiny.yaml")
TOOL = str(ROOT / "tools/generate_pseudo_labels.py")


def tiny_cfg(*opts):
    return setup_cfg(TINY, ["MODEL.MANO.MODEL_PATH", FIXTURE_MANO, "MODEL.DEVICE", "cpu", *opts])


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return HandObjectPredictor(tiny_cfg())


def _frames(count, seed=0, size=(120, 160)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(count)]


HAND = [20.0, 30.0, 70.0, 90.0, 0.8]
OBJECT = [55.0, 40.0, 110.0, 100.0, 0.6]


# ---------------------------------------------------------------------------------------------
# Boxes file


def _write_json(path, content):
    path.write_text(json.dumps(content))
    return str(path)


def test_boxes_file_is_read_per_video_and_frame(tmp_path):
    path = _write_json(
        tmp_path / "boxes.json",
        {"clip": {"0": {"hand": HAND, "object": OBJECT}, "3": {"hand": HAND, "object": None}}},
    )
    boxes = load_boxes_file(path)
    assert sorted(boxes["clip"]) == [0, 3]
    np.testing.assert_array_equal(boxes["clip"][0]["object"], OBJECT)
    assert boxes["clip"][3] is None  # no object: no pair


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2], "expected an object"),
        ({"clip": [1]}, "must map frame indices"),
        ({"clip": {"first": {"hand": HAND, "object": OBJECT}}}, "frame keys must be integers"),
        ({"clip": {"0": {"hand": HAND[:4], "object": OBJECT}}}, "5 finite numbers"),
        ({"clip": {"0": {"hand": [50, 30, 20, 90, 1], "object": OBJECT}}}, "empty box"),
        ({"clip": {"0": {"hand": HAND, "obj": OBJECT}}}, "expected {'hand'"),
    ],
)
def test_malformed_boxes_files_are_named(tmp_path, content, message):
    path = _write_json(tmp_path / "boxes.json", content)
    with pytest.raises(ValueError, match=message) as error:
        load_boxes_file(path)
    assert path in str(error.value)


def test_distillation_transforms_follow_the_mode():
    assert distillation_transforms(tiny_cfg()) is None  # "filtered": one plain view
    assert distillation_transforms(tiny_cfg("SEMI.FILTER.NAMES", "[]")) is None
    cfg = tiny_cfg(
        "SEMI.MODE", "distillation", "SEMI.DISTILLATION_SCALES", "[1.0, 1.2]",
        "SEMI.DISTILLATION_ROTATIONS", "[-10.0, 0.0, 10.0]",
    )  # fmt: skip
    assert len(distillation_transforms(cfg)) == 6
    with pytest.raises(ValueError, match="SEMI.MODE"):
        distillation_transforms(tiny_cfg("SEMI.MODE", "fancy"))


# ---------------------------------------------------------------------------------------------
# Teacher on the tiny model (random weights): fields, boxes, scores, identity transform


def test_given_boxes_and_scores_come_back_and_frames_without_boxes_give_none(predictor):
    boxes = {
        "clip": {
            0: {"hand": np.array(HAND), "object": np.array(OBJECT)},
            2: {"hand": np.array(OBJECT), "object": np.array(HAND)},
            3: None,
        }
    }
    teacher = Teacher(predictor, boxes)
    out = teacher(_frames(4), [0, 1, 2, 3], "clip")
    assert out[1] is None and out[3] is None
    for prediction, hand, obj in ((out[0], HAND, OBJECT), (out[2], OBJECT, HAND)):
        np.testing.assert_array_equal(prediction["hand_box"], hand[:4])
        np.testing.assert_array_equal(prediction["object_box"], obj[:4])
        assert prediction["hand_score"] == hand[4] and prediction["object_score"] == obj[4]
        assert prediction["joints2d"].shape == (21, 2)
        assert prediction["joints3d"].shape == (21, 3) and prediction["mano_shape"].shape == (10,)
        np.testing.assert_array_equal(prediction["joints3d"][0], 0.0)  # root-relative
        assert np.isfinite(prediction["joints2d"]).all()
    assert teacher(_frames(2), [0, 1], "unknown video") == [None, None]


def test_distillation_with_only_the_identity_equals_the_plain_prediction(predictor):
    boxes = {"clip": {i: {"hand": np.array(HAND), "object": np.array(OBJECT)} for i in range(3)}}
    images = _frames(3, seed=1)
    plain = Teacher(predictor, boxes)(images, [0, 1, 2], "clip")
    identity = Teacher(predictor, boxes, transforms=[(1.0, 0.0)], batch_size=2)
    averaged = identity(images, [0, 1, 2], "clip")
    for a, b in zip(plain, averaged):  # float32 batches of other sizes: rounding only
        np.testing.assert_allclose(a["joints2d"], b["joints2d"], atol=1e-3)  # px
        np.testing.assert_allclose(a["joints3d"], b["joints3d"], atol=1e-6)  # m
        np.testing.assert_allclose(a["mano_shape"], b["mano_shape"], atol=1e-5)


def test_detected_pairs_keep_the_detector_scores(predictor):
    images = _frames(2, seed=2)
    predictions = Teacher(predictor)(images, [0, 1], "clip")
    outputs = predictor.predict_batch([{"image": image} for image in images])
    found = 0
    for prediction, output in zip(predictions, outputs):
        detections = output["detections"]
        hands = detections[detections.pred_classes == 0]
        if prediction is None:
            continue
        found += 1
        # The pair's hand is the best-scoring hand detection of the whole frame.
        best = int(hands.scores.argmax())
        assert prediction["hand_score"] == pytest.approx(float(hands.scores[best]))
        np.testing.assert_allclose(
            prediction["hand_box"], hands.pred_boxes.tensor[best].numpy(), atol=1e-3
        )
    assert found  # the random tiny detector does find pairs on these frames


# ---------------------------------------------------------------------------------------------
# Distillation geometry with model stand-ins


class StandInPredictor:
    """The attributes of HandObjectPredictor that distillation uses; ``model.inference`` maps a
    batch of model inputs and their given boxes to outputs with one hand-object row, like
    HandObjectRCNN (2D in the frame's pixels through the inverse of ``image_to_input``)."""

    crop_size = 96
    crop_scale = 1.5
    # The real crop (the test-time mapper), on the attributes above.
    mapper = HandObjectPredictor.mapper
    model_input = HandObjectPredictor.model_input

    def __init__(self, pose):
        self.cfg = tiny_cfg("INPUT.HANDOBJ.CROP_SIZE", 96, "INPUT.HANDOBJ.CROP_SCALE", 1.5)
        self._mappers = {}
        self.model = self
        self.pose = pose  # (input dict) -> (joints2d (21, 2) input px, joints3d (21, 3))
        self.seen = []

    def inference(self, inputs, detected_instances=None):
        outputs = []
        for record, given in zip(inputs, detected_instances):
            boxes = np.stack([record["hand_box"], record["object_box"]])
            np.testing.assert_allclose(given.pred_boxes.tensor.numpy(), boxes, rtol=1e-6)
            self.seen.append(record)
            joints2d, joints3d = self.pose(record)
            to_frame = np.linalg.inv(np.asarray(record["image_to_input"], dtype=np.float64))
            joints2d = joints2d @ to_frame[:2, :2].T + to_frame[:2, 2]
            pairs = Instances(
                (self.crop_size, self.crop_size),
                pred_joints2d=torch.tensor(joints2d[None]),
                pred_joints3d=torch.tensor(joints3d[None]),
                pred_mano_shape=torch.zeros(1, 10),
            )
            outputs.append({"instances": pairs})
        return outputs


WRIST, TIP = np.array([62.0, 88.0]), np.array([101.0, 69.0])


def _dot_image():
    """A frame with a red dot (the wrist) and a green dot (a fingertip), BGR."""
    image = np.zeros((160, 200, 3), np.uint8)
    cv2.circle(image, (62, 88), 4, (0, 0, 255), -1, lineType=cv2.LINE_AA)
    cv2.circle(image, (101, 69), 4, (0, 255, 0), -1, lineType=cv2.LINE_AA)
    # LINE_AA draws at integer centres: the blob centroids are the dots' centres.
    return image


def _read_dots(record):
    """Stand-in model that looks at its input: 2D joints at the dots (wrist, then 20 times the
    tip); 3D joints 0.1 m x k/20 along the wrist->tip direction it sees (its camera, z = 0)."""
    image = record["image"].numpy().transpose(1, 2, 0).astype(np.float64)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]

    def centroid(weight):
        return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()

    wrist, tip = centroid(image[:, :, 2]), centroid(image[:, :, 1])
    direction = (tip - wrist) / np.linalg.norm(tip - wrist)
    joints2d = np.stack([wrist] + [tip] * 20)
    steps = np.arange(21)[:, None] / 20 * 0.1
    joints3d = np.concatenate([steps * direction, np.zeros((21, 1))], 1)
    return joints2d, joints3d


def test_distillation_maps_rotated_and_scaled_views_back_to_the_frame():
    stand_in = StandInPredictor(_read_dots)
    transforms = [(s, a) for s in (0.8, 1.25) for a in (-30.0, 0.0, 40.0)]
    boxes = {"v": {0: {"hand": np.array([50.0, 60, 110, 100, 0.9]),
                       "object": np.array([90.0, 50, 130, 95, 0.7])}}}  # fmt: skip
    (prediction,) = Teacher(stand_in, boxes, transforms=transforms, batch_size=4)(
        [_dot_image()], [0], "v"
    )
    assert len(stand_in.seen) == 6
    # Every view is really rotated: the wrist->tip direction differs between views.
    seen = [_read_dots(record)[1][20, :2] for record in stand_in.seen]
    assert np.ptp([np.arctan2(d[1], d[0]) for d in seen]) > np.radians(60)
    # In the frame: 2D joints at the dots, 3D joints along the frame's wrist->tip direction.
    np.testing.assert_allclose(prediction["joints2d"][0], WRIST, atol=0.3)
    np.testing.assert_allclose(prediction["joints2d"][1:], np.tile(TIP, (20, 1)), atol=0.3)
    direction = (TIP - WRIST) / np.linalg.norm(TIP - WRIST)
    expected = np.arange(21)[:, None] / 20 * 0.1 * np.append(direction, 0.0)
    np.testing.assert_allclose(prediction["joints3d"], expected, atol=1e-3)


def test_distillation_averages_the_views():
    """A stand-in seeing the same pose Y in every view (its own camera): rolling back by +-a
    and averaging gives (Y_x cos a, Y_y cos a, Y_z), and the crop centre maps back to the
    fused box centre whatever the scale and rotation (the boxes are point-symmetric about
    that centre, (80, 70), so the rotated boxes' union, which the crop frames, is too)."""
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(21, 3))
    Y[0] = 0
    centre = StandInPredictor.crop_size / 2
    stand_in = StandInPredictor(lambda record: (np.full((21, 2), centre), Y))
    boxes = {"v": {0: {"hand": np.array([40.0, 30, 80, 90, 1]),
                       "object": np.array([80.0, 50, 120, 110, 1])}}}  # fmt: skip
    teacher = Teacher(stand_in, boxes, transforms=[(0.9, -25.0), (1.1, 25.0)])
    (prediction,) = teacher([np.zeros((140, 160, 3), np.uint8)], [0], "v")
    c = np.cos(np.radians(25.0))
    np.testing.assert_allclose(prediction["joints3d"], Y * [c, c, 1.0], atol=1e-9)
    np.testing.assert_allclose(prediction["joints2d"], np.tile([80.0, 70.0], (21, 1)), atol=1e-9)


# ---------------------------------------------------------------------------------------------
# tools/generate_pseudo_labels.py


def _tool(*args):
    return subprocess.run(
        [sys.executable, TOOL, "--config-file", TINY, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_tool_rejects_bad_input_with_a_clear_message(tmp_path):
    (tmp_path / "broken.mp4").write_text("not a video")
    for args, message in (
        (["--videos", str(tmp_path / "missing")], "video path not found"),
        (["--videos", str(tmp_path / "broken.mp4")], "cannot open this video"),
    ):
        result = _tool(*args, "--output", str(tmp_path / "out"))
        assert result.returncode != 0
        assert message in result.stderr and "Traceback" not in result.stderr


def test_generation_checks_boxes_weights_and_mode_before_starting(tmp_path):
    frames = tmp_path / "v"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((48, 64, 3), np.uint8))
    bad_boxes = _write_json(tmp_path / "boxes.json", {"v": {"0": {"hand": [1, 2]}}})
    for extra, opts, message in (
        ({"boxes": bad_boxes}, [], "boxes.json"),
        ({}, ["MODEL.WEIGHTS", str(tmp_path / "teacher.pth")], "teacher checkpoint not found"),
        ({}, ["SEMI.MODE", "fancy"], "SEMI.MODE"),
        ({"intrinsics": [0, 500, 32, 24]}, [], "focal lengths"),
    ):
        with pytest.raises((HandObjectConfigError, OSError, ValueError), match=message):
            cfg = setup_cfg(TINY, opts)
            check_inputs(cfg, [str(frames)], str(tmp_path / "out"), TINY, **extra)


def _frame_folders(root):
    """Two 5-frame folders, 96x72 px, with textured content, and boxes for all but one frame."""
    rng = np.random.default_rng(4)
    boxes = {}
    for video in ("walk", "turn"):
        (root / video).mkdir(parents=True)
        boxes[video] = {}
        for i in range(5):
            image = cv2.GaussianBlur(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), (5, 5), 2)
            cv2.imwrite(str(root / video / f"{i:03d}.png"), image)
            boxes[video][str(i)] = {
                "hand": [20 + i, 15, 50 + i, 50, 0.9],
                "object": [40, 20 + i, 70, 60, 0.8],
            }
    del boxes["turn"]["2"]
    return boxes


def test_tool_end_to_end_writes_pseudo_labels_the_mapper_maps(tmp_path):
    boxes = _write_json(tmp_path / "boxes.json", _frame_folders(tmp_path / "videos"))
    out = tmp_path / "pseudo"
    opts = [
        "MODEL.MANO.MODEL_PATH", FIXTURE_MANO, "MODEL.DEVICE", "cpu", "SEMI.MODE", "distillation",
        "SEMI.DISTILLATION_SCALES", "[1.0, 1.2]", "SEMI.DISTILLATION_ROTATIONS", "[0.0, 20.0]",
    ]  # fmt: skip
    args = ["--videos", str(tmp_path / "videos"), "--output", str(out), "--boxes", boxes]
    result = _tool(*args, "--intrinsics", "100", "100", "48", "36", *opts)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == 2 and summary["frames"] == 10
    assert summary["frames_with_prediction"] == 9 and summary["kept"] == 9  # no filters
    assert (out / "scores.csv").read_text().count("\n") == 11

    name = "test_semi_tools_pseudo"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_pseudo_label_dataset(name, str(out / "pseudo_labels.json"))
    records = DatasetCatalog.get(name)
    assert sorted(r["image_id"] for r in records) == sorted(
        [f"walk/{i}" for i in range(5)] + [f"turn/{i}" for i in (0, 1, 3, 4)]
    )
    record = next(r for r in records if r["image_id"] == "walk/3")
    assert os.path.isfile(record["file_name"])
    np.testing.assert_allclose(record["camera_K"], [[100, 0, 48], [0, 100, 36], [0, 0, 1]])
    np.testing.assert_allclose(record["annotations"][0]["bbox"], [23, 15, 53, 50])
    mapper = HandObjectDatasetMapper(tiny_cfg(), is_train=True)
    for record in records:
        sample = mapper(record)
        assert sample["is_pseudo_label"]
        assert tuple(sample["image"].shape) == (3, 128, 128)
        assert tuple(sample["hand_object"].gt_joints3d.shape) == (1, 21, 3)
        assert sample["hand_object"].gt_has_joints3d[0]
        assert not sample["hand_object"].gt_has_mano[0]

    rerun = _tool(*args, "--intrinsics", "100", "100", "48", "36", *opts)
    assert rerun.returncode == 0
    assert json.loads((out / "summary.json").read_text()) == summary
    other = _tool(*args, *opts)  # same folder, other intrinsics: refused
    assert other.returncode != 0 and "other settings" in other.stderr


# ---------------------------------------------------------------------------------------------
# Student training wiring: SEMI.PSEUDO_LABEL_FILES and SEMI.STUDENT_INIT


def test_pseudo_label_files_are_registered_as_training_datasets(tmp_path):
    record = {
        "file_name": "frames/v/000000.jpg",
        "image_id": "v/0",
        "height": 48,
        "width": 64,
        "annotations": [
            {"category_id": 0, "bbox": [1, 2, 30, 40], "joints2d": np.ones((21, 2)).tolist(),
             "joints3d": np.zeros((21, 3)).tolist()},
            {"category_id": 1, "bbox": [20, 10, 60, 45]},
        ],
    }  # fmt: skip
    path = _write_json(tmp_path / "pseudo_labels.json", [record])
    cfg = tiny_cfg("SEMI.PSEUDO_DATASETS", "('named',)", "SEMI.PSEUDO_LABEL_FILES", f"('{path}',)")
    names = pseudo_label_datasets(cfg)
    assert names == ["named", f"pseudo_labels:{path}"]
    assert pseudo_label_datasets(cfg) == names  # registered once, reusable
    (loaded,) = DatasetCatalog.get(names[1])
    assert loaded["file_name"] == str(tmp_path / "frames/v/000000.jpg")
    missing = tiny_cfg("SEMI.PSEUDO_LABEL_FILES", f"('{tmp_path / 'none.json'}',)")
    with pytest.raises(FileNotFoundError, match="none.json"):
        pseudo_label_datasets(missing)


def test_student_initialisation():
    weights = ["MODEL.WEIGHTS", "teacher.pth"]
    student = ["SEMI.PSEUDO_LABEL_FILES", "('p.json',)"]
    assert initial_weights(tiny_cfg(*weights)) == "teacher.pth"  # not a student
    assert initial_weights(tiny_cfg(*weights, *student)) == "teacher.pth"
    assert initial_weights(tiny_cfg(*weights, *student, "SEMI.STUDENT_INIT", "scratch")) == ""
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        initial_weights(tiny_cfg(*student))
    with pytest.raises(ValueError, match="'teacher' or 'scratch'"):
        initial_weights(tiny_cfg(*weights, *student, "SEMI.STUDENT_INIT", "imagenet"))


# ---------------------------------------------------------------------------------------------
# The semi-supervised experiment (handobj_d2/semi/experiment.py, its command line
# tools/run_semi_synthetic_experiment.py): scoring pseudo-labels and summarising seeds


def test_experiment_summary_is_mean_and_sample_std_over_seeds():
    seeds = {
        "0": {"teacher": dict(PA_MPJPE_mm=10.0, PA_AUC=50.0, MPJPE_mm=20.0, AUC=30.0),
              "student_filtered": None, "pseudo_filtered": {"kept": 0}},
        "1": {"teacher": dict(PA_MPJPE_mm=12.0, PA_AUC=54.0, MPJPE_mm=23.0, AUC=30.0),
              "student_filtered": dict(PA_MPJPE_mm=9.0, PA_AUC=60.0, MPJPE_mm=19.0, AUC=33.0)},
    }  # fmt: skip
    summary = semi_experiment.summarize(seeds)
    assert set(summary) == {"teacher", "student_filtered"}
    assert summary["teacher"]["PA_MPJPE_mm"] == {"mean": 11.0, "std": pytest.approx(2**0.5), "n": 2}
    assert summary["teacher"]["MPJPE_mm"]["std"] == pytest.approx(1.5 * 2**0.5)
    assert summary["student_filtered"]["PA_AUC"] == {"mean": 60.0, "std": 0.0, "n": 1}


def _score_pseudo_labels(tmp_path, frames, truth):
    """pseudo_label_errors of one video "v": its per-frame results ``frames`` (the generator's
    videos/v.json) against ``truth``, per frame (21, 3) camera-frame joints (manopth order,
    OpenCV) or None."""
    from handobj_d2.geometry import MANOPTH_TO_HO3D, opengl_to_opencv

    (tmp_path / "pseudo" / "videos").mkdir(parents=True)
    (tmp_path / "pseudo" / "videos" / "v.json").write_text(
        json.dumps({"video": "v", "frames": frames})
    )
    (tmp_path / "shifted" / "video_ground_truth").mkdir(parents=True)
    metas = [
        None if t is None else {"handJoints3D": opengl_to_opencv(t)[MANOPTH_TO_HO3D]} for t in truth
    ]
    with open(tmp_path / "shifted" / "video_ground_truth" / "v.pkl", "wb") as f:
        pickle.dump({"name": "v", "frames": metas}, f)
    return semi_experiment.pseudo_label_errors(str(tmp_path / "pseudo"), str(tmp_path / "shifted"))


def test_pseudo_labels_are_scored_against_the_video_ground_truth(tmp_path):
    rng = np.random.default_rng(5)
    truth = rng.normal(0, 0.04, (2, 21, 3)) + [0.0, 0.0, 0.5]  # camera frame, manopth order
    relative = truth - truth[:, :1]
    quarter_turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    shifted = relative.copy()
    shifted[1, 1:] += [0.01, 0.0, 0.0]  # 1 cm off on 20 of the 21 joints
    frames = [
        {"frame_index": 0, "predicted": True, "kept": True,
         "prediction": {"joints3d": (1.2 * relative[0] @ quarter_turn.T).tolist()}},
        {"frame_index": 1, "predicted": True, "kept": False,
         "prediction": {"joints3d": shifted[1].tolist()}},
        {"frame_index": 2, "predicted": False, "kept": False},
    ]  # fmt: skip
    errors = _score_pseudo_labels(tmp_path, frames, [*truth, None])
    turned = np.linalg.norm(1.2 * relative[0] @ quarter_turn.T - relative[0], axis=1).mean()
    assert errors["MPJPE_mm_kept"] == pytest.approx(turned * 1000)
    assert errors["PA_MPJPE_mm_kept"] == pytest.approx(0.0, abs=1e-6)  # a similarity away
    assert errors["MPJPE_mm_all"] == pytest.approx((turned * 1000 + 10 * 20 / 21) / 2)


def test_consistency_scores_are_rank_correlated_with_the_label_errors(tmp_path):
    rng = np.random.default_rng(6)
    truth = rng.normal(0, 0.04, (5, 21, 3)) + [0.0, 0.0, 0.5]
    offsets = [0.005, 0.01, 0.02, 0.03]  # m on joints 1-20: MPJPE = offset * 20 / 21, rising
    residuals = [0.4, 0.1, 0.2, 0.3]  # ranks 4 1 2 3 against 1 2 3 4: rho = 1 - 6 * 12 / 60
    temporal = [None, 0.1, 0.2, 0.3]  # no neighbour in frame 0 (NaN, null in JSON): rho = 1
    frames = []
    for index, (offset, residual, distance) in enumerate(zip(offsets, residuals, temporal)):
        prediction = truth[index] - truth[index, :1]
        prediction[1:] += [offset, 0.0, 0.0]
        frames.append({"frame_index": index, "predicted": True, "kept": True,
                       "residual_2d3d": residual, "temporal_distance": distance,
                       "prediction": {"joints3d": prediction.tolist()}})  # fmt: skip
    frames.append({"frame_index": 4, "predicted": False, "kept": False})
    errors = _score_pseudo_labels(tmp_path, frames, truth)
    assert errors["MPJPE_mm_all"] == pytest.approx(np.mean(offsets) * 20 / 21 * 1000)
    assert errors["spearman_residual_2d3d_vs_MPJPE"] == pytest.approx(-0.2)
    assert errors["spearman_temporal_distance_vs_MPJPE"] == pytest.approx(1.0)
    assert not any("shape_deviation" in key for key in errors)  # never scored


def test_rank_correlation_tells_orientation_errors_from_articulation_errors(tmp_path):
    rng = np.random.default_rng(7)
    truth = rng.normal(0, 0.04, (3, 21, 3)) + [0.0, 0.0, 0.5]
    relative = truth - truth[:, :1]
    quarter_turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    fingers_off = relative[2].copy()
    fingers_off[1:] += [0.02, 0.0, 0.0]  # not a similarity: PA-MPJPE > 0, MPJPE 2 cm * 20 / 21
    predictions = [relative[0], 1.2 * relative[1] @ quarter_turn.T, fingers_off]
    turned = np.linalg.norm(predictions[1] - relative[1], axis=1).mean()
    assert turned > 0.02 * 20 / 21  # MPJPE ranks 1 3 2; PA-MPJPE ranks 1-2 (both ~0), 3
    frames = [
        {"frame_index": index, "predicted": True, "kept": True, "residual_2d3d": residual,
         "prediction": {"joints3d": prediction.tolist()}}
        for index, (prediction, residual) in enumerate(zip(predictions, [0.1, 0.1, 0.3]))
    ]  # fmt: skip
    errors = _score_pseudo_labels(tmp_path, frames, truth)
    # Score ranks 1.5 1.5 3 (deviations -0.5 -0.5 1): against MPJPE's -1 1 0 the covariance is
    # 0; against PA-MPJPE's -1 0 1 (or 0 -1 1) it is 1.5, rho = 1.5 / sqrt(1.5 * 2).
    assert errors["spearman_residual_2d3d_vs_MPJPE"] == pytest.approx(0.0, abs=1e-12)
    assert errors["spearman_residual_2d3d_vs_PA_MPJPE"] == pytest.approx(3**0.5 / 2)


def test_experiment_with_given_teacher_weights_trains_no_teacher(tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiment_tool.parse_args(["--output", str(tmp_path), "--teacher-weights", "missing.pth"])
    assert "--teacher-weights: no such file: missing.pth" in capsys.readouterr().err
    given = tmp_path / "teacher.pth"
    given.write_bytes(b"")
    args = experiment_tool.parse_args(["--output", str(tmp_path), "--teacher-weights", str(given)])
    experiment = semi_experiment.Experiment(args, seed=0)
    calls = []
    experiment.make_data = lambda: None
    experiment.train = lambda name, iters, *opts: calls.append(("train", name, *opts)) or name
    experiment.evaluate = lambda name, weights: calls.append(("evaluate", name, weights)) or {}
    experiment.pseudo_labels = lambda mode, weights: (
        calls.append(("pseudo", weights)) or {"kept": 0}
    )
    experiment.run(lambda part, value: None)
    assert calls == [
        ("evaluate", "teacher", str(given)),
        ("pseudo", str(given)),
        ("pseudo", str(given)),
    ]  # no student either: no pseudo-label was kept


def test_shift_breakdown_evaluates_the_teacher_on_each_half_of_the_shift(tmp_path):
    given = tmp_path / "teacher.pth"
    given.write_bytes(b"")
    args = experiment_tool.parse_args(
        ["--output", str(tmp_path), "--teacher-weights", str(given), "--shift-breakdown"]
    )
    experiment = semi_experiment.Experiment(args, seed=3)
    calls, generated = [], []
    experiment.make_data = lambda: None
    experiment._generate = lambda name, root, domain, frames, videos: generated.append(
        (name, os.path.relpath(root, tmp_path), domain, frames, videos)
    )
    experiment.evaluate = lambda name, weights, test=None: calls.append((name, test)) or {}
    experiment.pseudo_labels = lambda mode, weights: {"kept": 0}
    experiment.run(lambda part, value: None)
    assert generated == [
        ("semi_experiment_seed3_default_test", "seed_3/data/test_default", "default", 48, 0),
        ("semi_experiment_seed3_shifted_appearance_test", "seed_3/data/test_shifted_appearance",
         "shifted_appearance", 48, 0),
        ("semi_experiment_seed3_shifted_shape_test", "seed_3/data/test_shifted_shape",
         "shifted_shape", 48, 0),
    ]  # fmt: skip
    assert calls == [
        ("teacher", None),
        ("teacher_on_default", "semi_experiment_seed3_default_test"),
        ("teacher_on_shifted_appearance", "semi_experiment_seed3_shifted_appearance_test"),
        ("teacher_on_shifted_shape", "semi_experiment_seed3_shifted_shape_test"),
    ]


def test_results_table_lists_the_shift_breakdown_apart_from_the_models():

    def metrics(pa):
        return dict(PA_MPJPE_mm=pa, PA_AUC=80.0, MPJPE_mm=40.0, AUC=30.0)

    seeds = {
        "0": {"teacher": metrics(10.5), "teacher_on_default": metrics(8.5),
              "teacher_on_shifted_appearance": metrics(9.0),
              "teacher_on_shifted_shape": metrics(10.0), "student_filtered": metrics(10.25)},
    }  # fmt: skip
    seeds["0"]["student_filtered"]["PA_MPJPE_mm_vs_teacher"] = {"mean": -0.25, "se": 0.1, "n": 8}
    results = {"settings": {"target_domain": "shifted"}, "seeds": seeds}
    table = experiment_tool.markdown_table(
        {**results, "summary": semi_experiment.summarize(seeds)}
    ).splitlines()
    models = [line.split(" | ") for line in table[2 : table.index("")]]
    assert [row[0][2:] for row in models] == ["student_filtered", "teacher"]
    assert [row[-1][:-2] for row in models] == ["-0.250 ± 0.100 (-0.25)", "-"]
    start = next(i for i, line in enumerate(table) if line.startswith("| teacher, test set"))
    rows = [line.split(" | ") for line in table[start + 2 : start + 6]]
    assert [(row[0][2:], row[-1][:-2]) for row in rows] == [
        ("default", "8.50"),
        ("shifted_appearance", "9.00"),
        ("shifted_shape", "10.00"),
        ("shifted", "10.50"),
    ]


def test_resuming_needs_the_same_experiment_and_older_folders_count_with_defaults():

    def settings(*argv):
        args = vars(experiment_tool.parse_args(["--output", "out", *argv]))
        return json.loads(json.dumps({k: v for k, v in args.items() if k != "output"}))

    before_target_domain = settings("--videos", "32")
    del before_target_domain["target_domain"], before_target_domain["shift_breakdown"]
    assert experiment_tool.same_experiment(before_target_domain, settings("--videos", "32"))
    assert experiment_tool.same_experiment(
        before_target_domain, settings("--videos", "32", "--seeds", "4", "--shift-breakdown")
    )
    assert not experiment_tool.same_experiment(
        before_target_domain, settings("--videos", "32", "--target-domain", "shifted_appearance")
    )
    assert not experiment_tool.same_experiment(before_target_domain, settings("--videos", "16"))


def test_paired_difference_to_the_teacher_is_mean_and_standard_error_per_frame():
    teacher = {"per_frame": {"MPJPE_mm": [5.0, 5.0, 5.0, 5.0], "PA_MPJPE_mm": [1.0] * 4}}
    model = {"per_frame": {"MPJPE_mm": [4.0, 4.0, 4.0, 4.0], "PA_MPJPE_mm": [1.0, 2.0, 3.0, 4.0]}}
    diff = semi_experiment.frame_differences(model, teacher)
    # differences 0, 1, 2, 3: mean 1.5, sample std sqrt(5/3), standard error sqrt(5/3) / 2
    assert diff["PA_MPJPE_mm_vs_teacher"] == {
        "mean": 1.5, "se": pytest.approx((5 / 3) ** 0.5 / 2), "n": 4}  # fmt: skip
    assert diff["MPJPE_mm_vs_teacher"] == {"mean": -1.0, "se": 0.0, "n": 4}
    assert semi_experiment.frame_differences({"PA_MPJPE_mm": 1.0}, teacher) == {}  # an older result


def test_paired_differences_pool_over_the_frames_of_all_seeds():
    # seed A: differences 0, 2 (mean 1, se 1); seed B: 4, 4, 4 (mean 4, se 0). All five frames:
    # mean 2.8, sample variance (2.8^2 + 0.8^2 + 3 x 1.2^2) / 4 = 3.2, standard error sqrt(3.2 / 5)
    pooled = pooled_difference([{"mean": 1.0, "se": 1.0, "n": 2}, {"mean": 4.0, "se": 0.0, "n": 3}])
    assert pooled == {"mean": pytest.approx(2.8), "se": pytest.approx(0.8), "n": 5}


def test_students_are_compared_frame_by_frame_with_the_teacher_and_the_baseline(tmp_path):
    given = tmp_path / "teacher.pth"
    given.write_bytes(b"")
    args = experiment_tool.parse_args(["--output", str(tmp_path), "--teacher-weights", str(given)])
    experiment = semi_experiment.Experiment(args, seed=0)
    pa = {"teacher": [10.0, 12.0], "student_distillation": [9.0, 12.0],
          "student_filtered": [9.0, 10.0]}  # fmt: skip
    experiment.make_data = lambda: None
    experiment.train = lambda name, iters, *opts: name
    experiment.evaluate = lambda name, weights: {
        "PA_MPJPE_mm": float(np.mean(pa[name])),
        "per_frame": {"MPJPE_mm": [50.0, 50.0], "PA_MPJPE_mm": pa[name]},
    }
    experiment.pseudo_labels = lambda mode, weights: {"kept": 1}
    records = {}
    experiment.run(records.__setitem__)
    assert "per_frame" not in records["teacher"]
    assert records["student_distillation"]["PA_MPJPE_mm_vs_teacher"] == {
        "mean": -0.5, "se": pytest.approx(0.5), "n": 2}  # fmt: skip
    assert "PA_MPJPE_mm_vs_student_distillation" not in records["student_distillation"]
    assert records["student_filtered"]["PA_MPJPE_mm_vs_teacher"]["mean"] == -1.5
    assert records["student_filtered"]["PA_MPJPE_mm_vs_student_distillation"] == {
        "mean": -1.0, "se": pytest.approx(1.0), "n": 2}  # fmt: skip
    assert records["student_filtered"]["MPJPE_mm_vs_teacher"]["mean"] == 0.0
