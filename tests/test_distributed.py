"""Two CPU processes (gloo) through handobj_d2.engine.launch: DistributedDataParallel training
with every config in configs/ (shrunk to a tiny model, 2 iterations on the synthetic set),
train_net's --num-processes, and pseudo-labels sharded over 2 processes equal to a single
process's, file for file."""

import importlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

from handobj_d2.engine import setup_cfg
from handobj_d2.engine.launch import add_launch_arguments, launch

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "synthetic" / "handobj_tiny.yaml")
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml"))
CONFIGS = [c for c in CONFIGS if not Path(c).name.startswith("Base-")]
# The R50 configs' architecture with small widths, 64 px crops, one image per process.
SMALL = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.MANO.MODEL_PATH", "",
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.STRIDE_IN_1X1", "False", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "100", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "20",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "MODEL.HANDOBJ.CR.REDUCED_CHANNELS", "16", "MODEL.HANDOBJ.HAND.HOURGLASS_PLANES", "16",
    "MODEL.HANDOBJ.HAND.MESH_CHANNELS", "32", "MODEL.HANDOBJ.HAND.MESH_FC_DIMS", "[64, 32]",
    "INPUT.HANDOBJ.CROP_SIZE", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.HANDOBJ.EPOCHS", "0",
    "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1000",
    "DATALOADER.NUM_WORKERS", "0",
    "DATASETS.TRAIN", "('synthetic_train',)", "DATASETS.TEST", "()",
]  # fmt: skip


def _tool(name):
    """A module of tools/ (they are scripts, not a package)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "tools"))


def _generation_args(root, output, processes):
    return [
        "--config-file", TINY, "--videos", str(root / "videos"), "--output", str(output),
        "--boxes", str(root / "boxes.json"), "--intrinsics", "80", "80", "32", "24",
        "--num-processes", str(processes), "--dist-url", "auto", "MODEL.DEVICE", "cpu",
        "MODEL.WEIGHTS", str(root / "teacher.pth"), "SEMI.MODE", "distillation",
        "SEMI.DISTILLATION_SCALES", "[1.0]", "SEMI.DISTILLATION_ROTATIONS", "[0.0]",
    ]  # fmt: skip


def _worker(root, runs):
    """What each of the two processes does: generate_pseudo_labels' main (sharded), DDP
    training with every run (name, config, opts), writing per rank the sum of each parameter
    afterwards, then train_net's main on the tiny config with evaluation."""
    from detectron2.utils import comm

    from handobj_d2.engine import HandObjectTrainer

    generate = _tool("generate_pseudo_labels")
    generate.main(generate.parse_args(_generation_args(root, root / "pseudo_2", 2)))
    for name, config, opts in runs:
        cfg = setup_cfg(config, SMALL + opts + ["OUTPUT_DIR", str(root / "train" / name)])
        trainer = HandObjectTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        model = trainer.model
        sums = {
            "ddp": isinstance(model, torch.nn.parallel.DistributedDataParallel),
            "iterations": trainer.iter,
            "parameters": {
                n: float(p.detach().double().sum())
                for n, p in getattr(model, "module", model).named_parameters()
            },
        }
        with open(root / "train" / f"{name}.rank{comm.get_rank()}.json", "w") as f:
            json.dump(sums, f)
    train_net = _tool("train_net")
    opts = SMALL + ["DATASETS.TEST", "('synthetic_eval',)", "OUTPUT_DIR", str(root / "train_net")]
    train_net.main(train_net.default_argument_parser().parse_args(["--config-file", TINY, *opts]))


@pytest.fixture(scope="module")
def run(tiny_synthetic_root, tmp_path_factory):
    """A tiny teacher checkpoint and three 3-frame folders with boxes; pseudo-labels from them
    by this process, then everything in ``_worker`` on two CPU processes. Returns the folder
    and the training runs."""
    root = tmp_path_factory.mktemp("distributed")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(setup_cfg(TINY, ["MODEL.DEVICE", "cpu"])), str(root)).save(
        "teacher"
    )
    rng = np.random.default_rng(2)
    boxes = {}
    for video in ("a", "b", "c"):
        (root / "videos" / video).mkdir(parents=True)
        boxes[video] = {}
        for i in range(3):
            image = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 2)
            cv2.imwrite(str(root / "videos" / video / f"{i:03d}.png"), image)
            boxes[video][str(i)] = {
                "hand": [10 + i, 8, 40, 40, 0.9],
                "object": [25, 10, 55, 44, 0.8],
            }
    (root / "boxes.json").write_text(json.dumps(boxes))
    # One torch thread, as each of the two processes on a 2-core machine gets: another thread
    # count sums in another order (last-digit differences in the pseudo-labels).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _tool("generate_pseudo_labels").cli(_generation_args(root, root / "pseudo_1", 1))
    finally:
        torch.set_num_threads(threads)

    # Students: a labeled and a pseudo-labeled image per process.
    pseudo = ["SEMI.PSEUDO_LABEL_FILES", f"('{root / 'pseudo_1' / 'pseudo_labels.json'}',)",
              "SEMI.STUDENT_INIT", "scratch", "SOLVER.IMS_PER_BATCH", "4"]  # fmt: skip
    # The released network's backbone is a ResNet-50 by construction. The fast config's 16 x 16
    # ROIs reach 1 x 1 in the hourglass, whose BatchNorm needs two pairs per process there.
    extra = {
        "semi_student": pseudo,
        "released": ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"],
        "fast": ["SOLVER.IMS_PER_BATCH", "4"],
    }
    runs = [
        (Path(c).with_suffix("").as_posix().replace("/", "_"), str(REPO / c),
         next((opts for key, opts in extra.items() if key in c), []))
        for c in CONFIGS
    ]  # fmt: skip
    runs.append(("detector_off", TINY, ["MODEL.HANDOBJ.DETECTOR_ON", "False"]))
    (root / "train").mkdir()
    env = {"HANDOBJ_DATASETS": str(tiny_synthetic_root.parent), "OMP_NUM_THREADS": "1"}
    with pytest.MonkeyPatch.context() as patch:  # read by the spawned processes
        for key, value in env.items():
            patch.setenv(key, value)
        launch(_worker, 2, "cpu", dist_url="auto", args=(root, runs))
    return root, runs


def test_sharded_pseudo_labels_equal_a_single_process(run):
    root, _ = run
    single, sharded = root / "pseudo_1", root / "pseudo_2"
    names = ["pseudo_labels.json", "scores.csv", "summary.json", "generation.json"]
    names += [f"videos/{v}.json" for v in ("a", "b", "c")]
    for name in names:
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    summary = json.loads((single / "summary.json").read_text())
    assert summary["videos"] == 3 and summary["frames"] == 9 and summary["kept"] == 9
    assert "log.txt.rank1" in os.listdir(sharded)  # a second process did run


def test_ddp_trains_every_config(run):
    root, runs = run
    assert len(runs) == len(CONFIGS) + 1 >= 8
    for name, _, _ in runs:
        ranks = [json.loads((root / "train" / f"{name}.rank{r}.json").read_text()) for r in (0, 1)]
        assert ranks[0]["ddp"] and ranks[0]["iterations"] == 2, name
        # Each process trained on its own images; DDP averaged the gradients, so the two
        # copies of the model took the same steps from the same (rank 0's) initial weights.
        assert ranks[0]["parameters"] == ranks[1]["parameters"], name


def test_train_net_trains_and_evaluates_on_two_processes(run):
    output = run[0] / "train_net"
    log = (output / "log.txt").read_text()
    assert "World size: 2" in log and "Starting training from iteration 0" in log
    assert "copypaste: Task: hand" in log and (output / "model_final.pth").is_file()
    # Evaluation gathered both processes' halves: the 4 evaluation frames, once each.
    pred = json.loads((output / "inference" / "synthetic_eval" / "pred.json").read_text())
    assert np.asarray(pred[0]).shape == (4, 21, 3)


def test_num_processes_is_the_number_of_processes_per_machine():
    parser = add_launch_arguments(default_argument_parser())
    assert parser.parse_args(["--num-processes", "3"]).num_gpus == 3
    assert parser.parse_args(["--num-gpus", "2"]).num_gpus == 2
