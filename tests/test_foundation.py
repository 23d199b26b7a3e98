"""The Detectron2 install is real, and the tools fail clearly on bad input."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_detectron2_subpackages_import():
    import detectron2
    import detectron2.data.transforms as T
    import detectron2.engine  # noqa: F401
    import detectron2.evaluation  # noqa: F401
    import detectron2.modeling  # noqa: F401

    assert detectron2.__version__.startswith("0.")
    # Pillow 10 removed Image.LINEAR, which v0.6 used as a default argument here.
    resized = T.ResizeTransform(4, 6, 8, 12).apply_image(np.zeros((4, 6, 3), np.uint8))
    assert resized.shape == (8, 12, 3)


def test_detectron2_model_zoo_configs_resolve():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    assert Path(path).is_file()


def _make_shapes_dataset(root, n_images, seed):
    """Images with one bright square (class 0) and one disc (class 1) at random places."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n_images):
        image = np.full((96, 128, 3), 40, np.uint8)
        x, y, s = rng.integers(5, 50), rng.integers(5, 40), rng.integers(20, 35)
        cv2.rectangle(image, (int(x), int(y)), (int(x + s), int(y + s)), (0, 0, 255), -1)
        cx, cy, r = rng.integers(80, 110), rng.integers(30, 70), rng.integers(10, 16)
        cv2.circle(image, (int(cx), int(cy)), int(r), (255, 200, 0), -1)
        path = root / f"{i}.png"
        cv2.imwrite(str(path), image)
        records.append(
            {
                "file_name": str(path),
                "image_id": i,
                "height": 96,
                "width": 128,
                "annotations": [
                    {
                        "bbox": [float(x), float(y), float(x + s), float(y + s)],
                        "bbox_mode": 0,
                        "category_id": 0,
                    },
                    {
                        "bbox": [float(cx - r), float(cy - r), float(cx + r), float(cy + r)],
                        "bbox_mode": 0,
                        "category_id": 1,
                    },
                ],
            }
        )
    return records


def _faster_rcnn_r18_cfg(output_dir, max_iter):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 128
    cfg.DATASETS.TRAIN = ("foundation_shapes_train",)
    cfg.DATASETS.TEST = ("foundation_shapes_test",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (96,)
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 0.002
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OUTPUT_DIR = str(output_dir)
    return cfg


def test_faster_rcnn_trains_checkpoints_resumes_and_evaluates(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset

    (tmp_path / "img").mkdir()
    train = _make_shapes_dataset(tmp_path / "img", 6, seed=0)
    for name, records in (
        ("foundation_shapes_train", train),
        ("foundation_shapes_test", train[:3]),
    ):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda r=records: r)
        MetadataCatalog.get(name).set(thing_classes=["square", "disc"])

    torch.manual_seed(0)
    trainer = DefaultTrainer(_faster_rcnn_r18_cfg(tmp_path / "out", max_iter=3))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (tmp_path / "out" / "model_final.pth").is_file()
    assert (tmp_path / "out" / "last_checkpoint").read_text().strip() == "model_final.pth"

    # Resume: a longer schedule continues from iteration 3, not from scratch.
    cfg = _faster_rcnn_r18_cfg(tmp_path / "out", max_iter=5)
    resumed = DefaultTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    metrics = [
        json.loads(line) for line in (tmp_path / "out" / "metrics.json").read_text().splitlines()
    ]
    # Iterations 0-2 then 3-4 (0-based) were logged: the resumed run did the last two only.
    assert [m["iteration"] for m in metrics] == [2, 4]

    evaluator = COCOEvaluator(
        "foundation_shapes_test", output_dir=str(tmp_path / "eval"), use_fast_impl=False
    )
    loader = build_detection_test_loader(cfg, "foundation_shapes_test")
    results = inference_on_dataset(resumed.model, loader, evaluator)
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75", "AP-square", "AP-disc"}
    assert all(np.isfinite(v) or np.isnan(v) for v in results["bbox"].values())


def test_installer_leaves_an_importable_detectron2_alone(tmp_path):
    fake = tmp_path / "site" / "detectron2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "9.9-from-source"\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "install_detectron2.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "9.9-from-source" in done.stdout and "leaving it alone" in done.stdout
    assert "Fetching" not in done.stdout
    assert (fake / "__init__.py").read_text() == '__version__ = "9.9-from-source"\n'


def test_installed_detectron2_is_a_pip_distribution():
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "show", "detectron2"], capture_output=True, text=True
    )
    assert listed.returncode == 0, "pip does not list detectron2"
    assert "Name: detectron2" in listed.stdout


def test_our_detectron2_build_installs_only_detectron2_packages():
    distribution = importlib.metadata.distribution("detectron2")
    if "no compiled ops" not in (distribution.metadata["Summary"] or ""):
        pytest.skip("detectron2 was not installed by tools/install_detectron2.py")
    top_level = {str(f).split("/")[0] for f in distribution.files if str(f).endswith(".py")}
    assert top_level == {"detectron2"}, "a package besides detectron2 would shadow the project's"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--config-file", "configs/does-not-exist.yaml"],
            "config file not found: configs/does-not-exist.yaml",
        ),
        (
            ["--config-file", "{bad}", "DATASETS.TRAIN", "('no_such_dataset',)"],
            "dataset 'no_such_dataset' is not registered",
        ),
        (["--config-file", "{bad}", "MODEL.NO_SUCH_KEY", "1"], "NO_SUCH_KEY"),
    ],
)
def test_train_net_rejects_bad_config_clearly(tmp_path, args, message):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("SOLVER:\n  MAX_ITER: 1\n")
    args = [a.replace("{bad}", str(bad)) for a in args]
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py")] + args,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_config_file_with_unknown_key_names_the_file(tmp_path):
    from handobj_d2.engine import HandObjectConfigError, setup_cfg

    bad = tmp_path / "typo.yaml"
    bad.write_text("MODEL:\n  HANDOBJ:\n    POOLER_RESOLUTON: 16\n")
    with pytest.raises(HandObjectConfigError, match="typo.yaml.*POOLER_RESOLUTON"):
        setup_cfg(str(bad))


def test_device_defaults_to_what_is_available():
    from handobj_d2.engine import setup_cfg

    assert setup_cfg().MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")
    assert setup_cfg(opts=["MODEL.DEVICE", "cpu"]).MODEL.DEVICE == "cpu"
