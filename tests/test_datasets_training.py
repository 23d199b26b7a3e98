"""HandObjectTrainer's loaders on an HO3D-format tree: the training batches go through the
mapper into the model (finite losses, gradients) and the test loader's crops run inference."""

from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from ho3d_fixture import write_ho3d_tree

from handobj_d2.data import HandObjectDatasetMapper
from handobj_d2.data.datasets import register_ho3d
from handobj_d2.engine import HandObjectTrainer, setup_cfg

ROOT = Path(__file__).parent.parent
TINY = str(ROOT / "configs" / "synthetic" / "handobj_tiny.yaml")
RANDOM_MANO = str(Path(__file__).parent / "fixtures" / "mano" / "mano_format_random_chumpy.pkl")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = write_ho3d_tree(str(tmp_path_factory.mktemp("ho3d_train")), train_frames=3)
    names = {"train": "fixture_loader_train", "evaluation": "fixture_loader_eval"}
    for split, name in names.items():
        register_ho3d(name, root, split, "v2")
    yield names
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_train_and_test_loaders_feed_the_model(datasets):
    cfg = setup_cfg(
        TINY,
        [
            "DATASETS.TRAIN", f"('{datasets['train']}',)",
            "DATASETS.TEST", f"('{datasets['evaluation']}',)",
            "SOLVER.IMS_PER_BATCH", "2",
            "MODEL.MANO.MODEL_PATH", RANDOM_MANO,
        ],
    )  # fmt: skip
    torch.manual_seed(0)
    batch = next(iter(HandObjectTrainer.build_train_loader(cfg)))
    assert len(batch) == 2
    assert batch[0]["image"].shape == (3, 128, 128) and batch[0]["hand_object"].gt_has_mano[0]
    assert batch[0]["instances"].gt_classes.tolist() == [0, 1]
    model = build_model(cfg)
    model.train()
    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    (sample,) = next(iter(HandObjectTrainer.build_test_loader(cfg, datasets["evaluation"])))
    assert not sample["hand_object"].gt_has_joints3d[0]
    model.eval()
    with torch.no_grad():
        (output,) = model([sample])
    assert output["instances"].pred_joints2d.shape == (1, 21, 2)
    # A test-time record with only given boxes (demo, unlabeled video) runs too.
    boxes_only = {
        "file_name": sample_record(datasets["evaluation"])["file_name"],
        "image_id": "boxes_only",
        "hand_box": [20, 5, 50, 30],
        "object_box": [35, 10, 60, 40],
    }
    mapped = HandObjectDatasetMapper(cfg, False)(boxes_only)
    with torch.no_grad():
        (output,) = model([mapped])
    assert output["instances"].pred_boxes.tensor.shape == (1, 4)
    assert torch.allclose(output["instances"].pred_boxes.tensor[0], torch.tensor([20.0, 5, 50, 30]))


def sample_record(name):
    return DatasetCatalog.get(name)[0]
