"""FreiHAND v2: the loader on the project's synthetic FreiHAND-format set (hands alone), its
conventions checked by hand (K-projection, MANO of the converted pose against the stored xyz,
the 61-value layout), its strictness, and the evaluator's FreiHAND submission and scores
against tools/evaluate_freihand.py."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.structures import Instances

from handobj_d2.data.datasets import builtin, load_freihand, register_freihand
from handobj_d2.data.datasets.freihand import FREIHAND_FINGERTIPS, mano_root, split_mano
from handobj_d2.data.synthetic.freihand import generate_freihand_dataset
from handobj_d2.engine import HandObjectTrainer, setup_cfg
from handobj_d2.evaluation import HandPoseEvaluator
from handobj_d2.evaluation.freihand_scorer import evaluate as evaluate_freihand
from handobj_d2.mano import HandLayer, load_mano_model
from tools.make_synthetic_dataset import main as make_synthetic_dataset

FRAMES, EVALUATION, VERSIONS = 3, 2, 4


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("freihand") / "FreiHAND")
    generate_freihand_dataset(folder, train=FRAMES, evaluation=EVALUATION, versions=VERSIONS)
    return folder


def _copy(root, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(root, target)
    return target


def _json(path, values=None):
    if values is None:
        return json.load(open(path))
    with open(path, "w") as f:
        json.dump(values, f)


def test_training_records_follow_the_sample_versions(root):
    records = load_freihand(root, "training", os.path.join(root, "mano"))
    assert len(records) == FRAMES * VERSIONS
    xyz = _json(os.path.join(root, "training_xyz.json"))
    for image, record in enumerate(records):
        version, frame = divmod(image, FRAMES)
        assert record["file_name"].endswith(os.path.join("training", "rgb", f"{image:08d}.jpg"))
        assert record["sample_version"] == ("gs", "hom", "sample", "auto")[version]
        assert record["frame_index"] == frame and (record["height"], record["width"]) == (224, 224)
        (hand,) = record["annotations"]
        assert hand["category_id"] == 0
        np.testing.assert_allclose(hand["joints3d"], xyz[frame], atol=1e-6)
        assert hand["vertices3d"].shape == (778, 3)
    assert len({r["image_id"] for r in records}) == len(records)


def test_joints2d_are_the_projection_with_K_and_the_box_bounds_them(root):
    K_list = _json(os.path.join(root, "training_K.json"))
    record = load_freihand(root, "training")[FRAMES + 1]
    (hand,) = record["annotations"]
    K, joints = np.array(K_list[1]), np.asarray(hand["joints3d"], np.float64)
    for j in (0, 4, 20):
        x, y, z = joints[j]
        u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
        assert hand["joints2d"][j] == pytest.approx([u, v], abs=1e-3)
    x1, y1, x2, y2 = hand["bbox"]
    assert x1 == pytest.approx(hand["joints2d"][:, 0].min(), abs=1e-3)
    assert y2 == pytest.approx(hand["joints2d"][:, 1].max(), abs=1e-3)
    assert "mano_pose" not in hand  # no MANO model given: no MANO labels


def test_mano_labels_reproduce_the_stored_joints_and_vertices(root):
    """The converted pose (flat hand mean) through the project's MANO layer + the wrist gives
    FreiHAND's xyz and verts; the stored pose as it is (relative to the hand mean) does not."""
    mano_path = os.path.join(root, "mano", "MANO_RIGHT.pkl")
    records = load_freihand(root, "training", mano_path)[:FRAMES]
    layer = HandLayer(mano_path).double()
    hands = [r["annotations"][0] for r in records]
    pose = torch.tensor(np.stack([h["mano_pose"] for h in hands]), dtype=torch.float64)
    shape = torch.tensor(np.stack([h["mano_shape"] for h in hands]), dtype=torch.float64)
    with torch.no_grad():
        vertices, joints = (t.numpy() for t in layer(pose, shape))
    wrist = np.stack([h["joints3d"][0] for h in hands])[:, None]
    gt_joints = np.stack([h["joints3d"] for h in hands])
    np.testing.assert_allclose(joints + wrist, gt_joints, atol=2e-5)
    np.testing.assert_allclose(vertices + wrist, np.stack([h["vertices3d"] for h in hands]),
                               atol=2e-5)  # fmt: skip
    raw = np.array([split_mano(np.ravel(m))[0] for m in _json(f"{root}/training_mano.json")])
    with torch.no_grad():
        _, unconverted = layer(torch.tensor(raw), shape)
    assert np.abs(unconverted.numpy() + wrist - gt_joints).max() > 0.005
    # The conversion is hands_mean added to the 45 finger values, the global rotation kept.
    hands_mean = load_mano_model(mano_path)["hands_mean"]
    np.testing.assert_allclose(hands[0]["mano_pose"][3:] - raw[0, 3:], hands_mean, atol=1e-6)
    np.testing.assert_allclose(hands[0]["mano_pose"][:3], raw[0, :3], atol=1e-6)


def test_mano_values_end_with_uv_root_and_scale_of_the_middle_knuckle(root):
    K_list = _json(os.path.join(root, "training_K.json"))
    xyz = _json(os.path.join(root, "training_xyz.json"))
    scale = _json(os.path.join(root, "training_scale.json"))
    for i, entry in enumerate(_json(os.path.join(root, "training_mano.json"))):
        assert np.shape(entry) == (1, 61)
        _, _, uv_root, s = split_mano(np.ravel(entry))
        knuckle = np.array(xyz[i][9])
        np.testing.assert_allclose(mano_root(uv_root, s, np.array(K_list[i])), knuckle,
                                   atol=1e-9)  # fmt: skip
        assert scale[i] == pytest.approx(np.linalg.norm(knuckle - np.array(xyz[i][10])))


def test_evaluation_records_and_registration(root):
    records = load_freihand(root, "evaluation")
    assert len(records) == EVALUATION
    assert records[1]["file_name"].endswith(os.path.join("evaluation", "rgb", "00000001.jpg"))
    hand = records[0]["annotations"][0]
    assert hand["vertices3d"].shape == (778, 3) and hand["joints3d"].shape == (21, 3)
    assert records[0]["reference_bone_length"] > 0
    assert {"freihand_train", "freihand_evaluation"} <= set(DatasetCatalog.list())
    metadata = MetadataCatalog.get("freihand_evaluation")
    assert metadata.hand_submission_format == "freihand"
    assert tuple(metadata.fingertip_vertices) == FREIHAND_FINGERTIPS
    assert builtin.BUILTIN_FREIHAND["freihand_train"][:2] == ("FreiHAND", "training")


def test_without_released_ground_truth_the_hand_box_is_the_crop(root, tmp_path):
    copy = _copy(root, tmp_path)
    for kind in ("xyz", "verts", "mano"):
        os.remove(os.path.join(copy, f"evaluation_{kind}.json"))
    (hand,) = load_freihand(copy, "evaluation")[0]["annotations"]
    assert hand["bbox"] == [0.0, 0.0, 224.0, 224.0] and "joints3d" not in hand


def test_bad_trees_give_named_errors(root, tmp_path):
    copy = _copy(root, tmp_path)
    xyz_path = os.path.join(copy, "training_xyz.json")
    xyz = _json(xyz_path)
    _json(xyz_path, xyz[:-1])
    with pytest.raises(ValueError, match="training_xyz.json has 2 entries but there are 3"):
        load_freihand(copy, "training")
    _json(xyz_path, xyz)
    os.remove(os.path.join(copy, "training", "rgb", "00000005.jpg"))
    with pytest.raises(ValueError, match=r"rgb holds 11 images .* 3 frames"):
        load_freihand(copy, "training")
    # 12 images again (3 versions of 3 frames) but 00000005.jpg is not among them
    shutil.copy(os.path.join(copy, "training", "rgb", "00000000.jpg"),
                os.path.join(copy, "training", "rgb", "00000099.jpg"))  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"1 of 12 images .*00000005.jpg"):
        load_freihand(copy, "training")
    os.remove(os.path.join(copy, "evaluation_verts.json"))
    with pytest.raises(FileNotFoundError, match="evaluation_verts.json is missing"):
        load_freihand(copy, "evaluation")
    os.remove(os.path.join(copy, "training_K.json"))
    with pytest.raises(FileNotFoundError, match="missing: training_K.json"):
        load_freihand(copy, "training")
    with open(os.path.join(copy, "evaluation_K.json"), "w") as f:
        f.write("[[1, 2")
    with pytest.raises(ValueError, match="evaluation_K.json: not valid JSON"):
        load_freihand(copy, "evaluation")


def _hand_outputs(records, offset):
    """Model outputs: root-relative ground truth moved by ``offset`` (3,) m."""
    outputs = []
    for record in records:
        (hand,) = record["annotations"]
        wrist = hand["joints3d"][0]
        pairs = Instances((224, 224))
        for name, points in (("joints3d", hand["joints3d"]), ("vertices", hand["vertices3d"])):
            value = np.asarray(points, np.float64) - wrist + offset
            pairs.set(f"pred_{name}", torch.tensor(value[None], dtype=torch.float32))
        outputs.append({"instances": pairs})
    return outputs


def test_evaluator_writes_the_submission_and_the_official_scores(root, tmp_path):
    name = "test_synthetic_freihand_evaluation"
    register_freihand(name, root, "evaluation", mano_path="")
    try:
        records = DatasetCatalog.get(name)
        evaluator = HandPoseEvaluator(name, str(tmp_path / "eval"), distributed=False)
        evaluator.reset()
        evaluator.process([{"image_id": r["image_id"]} for r in records],
                          _hand_outputs(records, np.array([0.0, 0.0, 0.01])))  # fmt: skip
        results = evaluator.evaluate()
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    joints, vertices = _json(str(tmp_path / "eval" / "pred.json"))
    # FreiHAND's frame and order: the ground truth 1 cm deeper, no flip, no reordering.
    gt = np.asarray(records[0]["annotations"][0]["joints3d"], np.float64)
    np.testing.assert_allclose(joints[0], gt + [0.0, 0.0, 0.01], atol=2e-6)
    official = evaluate_freihand(str(tmp_path / "eval" / "pred.json"), root, str(tmp_path / "s"))
    # The same numbers as scores.txt writes them (the records hold float32 ground truth).
    assert list(results["freihand"]) == list(official)
    for key, value in official.items():
        assert f"{results['freihand'][key]:f}" == f"{value:f}", key
    assert official["xyz_mean3d"] == pytest.approx(1.0, abs=1e-3)
    assert official["xyz_al_mean3d"] == pytest.approx(0.0, abs=1e-3)
    assert official["f_al_score_5"] == pytest.approx(1.0)


def test_the_model_trains_and_is_scored_on_hands_alone(root, tmp_path):
    """FreiHAND frames have a hand and no object: the tiny model trains on them (object
    losses off) and ``trainer.test`` scores its predictions with the official FreiHAND keys."""
    train, evaluation = "test_e2e_freihand_train", "test_e2e_freihand_evaluation"
    register_freihand(train, root, "training", mano_path=os.path.join(root, "mano"))
    register_freihand(evaluation, root, "evaluation", mano_path="")
    try:
        cfg = setup_cfg("configs/synthetic/handobj_tiny.yaml", [
            "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{evaluation}',)",
            "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
            "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu",
            "DATALOADER.NUM_WORKERS", "0",
        ])  # fmt: skip
        torch.manual_seed(0)
        trainer = HandObjectTrainer(cfg)
        losses = {}
        trainer.register_hooks([_LossRecorder(losses)])
        trainer.train()
        results = HandObjectTrainer.test(cfg, trainer.model)
    finally:
        for name in (train, evaluation):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    # Hands alone: the object's losses are exactly zero, the hand's are not.
    assert losses["loss_joints2d"] > 0 and all(
        value == 0.0 for key, value in losses.items() if "object" in key
    ), losses
    assert set(results["freihand"]) == {
        "xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d", "mesh_mean3d", "mesh_auc3d",
        "mesh_al_mean3d", "mesh_al_auc3d", "f_score_5", "f_al_score_5", "f_score_15",
        "f_al_score_15",
    }  # fmt: skip
    assert "object" not in results and np.isfinite(results["hand"]["PA_MPJPE_mm"])
    joints, vertices = _json(str(tmp_path / "inference" / evaluation / "pred.json"))
    assert np.asarray(joints).shape == (EVALUATION, 21, 3)
    assert np.asarray(vertices).shape == (EVALUATION, 778, 3)


class _LossRecorder(HookBase):
    """Keeps the last iteration's losses (the trainer's storage) in ``losses``."""

    def __init__(self, losses):
        self.losses = losses

    def after_step(self):
        for key, (value, _) in self.trainer.storage.latest().items():
            if key.startswith("loss_"):
                self.losses[key] = value


def test_make_synthetic_dataset_tool_writes_a_freihand_tree(tmp_path):
    output = str(tmp_path / "synthetic_freihand")
    arguments = ["--format", "freihand", "--output", output, "--train", "2", "--eval", "1",
                 "--versions", "2", "--image-size", "96", "96"]  # fmt: skip
    assert make_synthetic_dataset(arguments) == 0
    records = load_freihand(output, "training", os.path.join(output, "mano"))
    assert len(records) == 4 and (records[0]["height"], records[0]["width"]) == (96, 96)
    assert "mano_pose" in records[3]["annotations"][0]
    assert len(load_freihand(output, "evaluation")) == 1
    masks = sorted(os.listdir(os.path.join(output, "training", "mask")))
    assert masks == ["00000000.jpg", "00000001.jpg"]
    with pytest.raises(SystemExit, match="not empty"):
        make_synthetic_dataset(arguments)
