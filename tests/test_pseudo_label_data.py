"""Pseudo-label datasets on disk and the labeled + pseudo-labeled batch mix."""

import itertools
import json

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from handobj_d2.config import add_handobj_config
from handobj_d2.data.build import build_hand_object_train_loader
from handobj_d2.data.datasets.pseudo_labels import load_pseudo_labels, register_pseudo_label_dataset


def _pseudo_record(i):
    return {
        "file_name": f"frames/v0/{i:04d}.jpg",
        "image_id": f"v0/{i}",
        "height": 48,
        "width": 64,
        "sequence": "v0",
        "frame_index": i,
        "annotations": [
            {
                "category_id": 0,
                "bbox": [1, 2, 30, 40],
                "joints2d": np.ones((21, 2)).tolist(),
                "joints3d": np.zeros((21, 3)).tolist(),
            },
            {"category_id": 1, "bbox": [20, 10, 60, 45]},
        ],
    }


def _register(name, records):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)


def test_pseudo_labels_load_with_paths_relative_to_the_json(tmp_path):
    path = tmp_path / "labels" / "pseudo_labels.json"
    path.parent.mkdir()
    path.write_text(json.dumps([_pseudo_record(0), _pseudo_record(1)]))
    records = load_pseudo_labels(str(path))
    assert records[1]["file_name"] == str(tmp_path / "labels" / "frames" / "v0" / "0001.jpg")
    assert all(r["is_pseudo_label"] for r in records)
    if "pseudo_test" in DatasetCatalog.list():
        DatasetCatalog.remove("pseudo_test")
        MetadataCatalog.remove("pseudo_test")
    register_pseudo_label_dataset("pseudo_test", str(path))
    assert len(DatasetCatalog.get("pseudo_test")) == 2
    assert MetadataCatalog.get("pseudo_test").thing_classes == ["hand", "object"]


def test_malformed_pseudo_labels_are_named(tmp_path):
    path = tmp_path / "bad.json"
    record = _pseudo_record(3)
    record["annotations"][0]["joints3d"] = [[0.0, 0.0]] * 21
    path.write_text(json.dumps([_pseudo_record(0), record]))
    with pytest.raises(
        ValueError, match=r"bad.json: record 1 \(v0/3\): hand 'joints3d' must be finite \(21, 3\)"
    ):
        load_pseudo_labels(str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_pseudo_labels(str(path))
    with pytest.raises(FileNotFoundError, match="pseudo-label file not found"):
        register_pseudo_label_dataset("never", str(tmp_path / "missing.json"))


@pytest.mark.parametrize("ratio, expected_pseudo", [(0.25, 1), (0.5, 2), (0.9, 3)])
def test_batches_mix_labeled_and_pseudo_samples_by_the_ratio(ratio, expected_pseudo):
    _register(
        "mix_labeled",
        [
            {"image_id": f"l{i}", "source": "labeled", "annotations": [{"category_id": 0}]}
            for i in range(5)
        ],
    )
    _register(
        "mix_pseudo",
        [
            {"image_id": f"p{i}", "source": "pseudo", "annotations": [{"category_id": 0}]}
            for i in range(7)
        ],
    )
    cfg = add_handobj_config(get_cfg())
    cfg.DATASETS.TRAIN = ("mix_labeled",)
    cfg.SEMI.PSEUDO_DATASETS = ("mix_pseudo",)
    cfg.SEMI.PSEUDO_RATIO = ratio
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    loader = build_hand_object_train_loader(cfg, mapper=lambda record: record)
    for batch in itertools.islice(loader, 6):
        sources = [sample["source"] for sample in batch]
        assert len(batch) == 4
        assert sources.count("pseudo") == expected_pseudo  # at most 3: one labeled sample stays
        assert sources[: 4 - expected_pseudo] == ["labeled"] * (4 - expected_pseudo)
