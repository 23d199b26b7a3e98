"""The released training recipe (configs/HO3D-v2/handobj_R50_FPN_released.yaml): its boxes and
crop by hand, the released augmentation's draws and PIL pixel convention, the MANO 3D-joint
target, torchvision's ResNet-50 in the released backbone, weight decay on every parameter,
schedules in epochs, and the refusal of configs that would freeze random layers."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler
from detectron2.structures import BoxMode

from handobj_d2.data.augmentation import ReleasedAugmentation
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
from handobj_d2.engine.defaults import (
    HandObjectConfigError,
    apply_epoch_schedule,
    setup_cfg,
)
from handobj_d2.engine.trainer import HandObjectTrainer
from handobj_d2.modeling.released_checkpoint import convert_torchvision_resnet50

REPO = Path(__file__).resolve().parents[1]
RELEASED = "configs/HO3D-v2/handobj_R50_FPN_released.yaml"
TINY = "configs/synthetic/handobj_tiny.yaml"
HEIGHT, WIDTH = 120, 160
K = np.array([[180.0, 0.0, 83.0], [0.0, 200.0, 57.5], [0.0, 0.0, 1.0]])
NO_JITTER = {"angle": 0.0, "scale": 1.0, "center_offset": np.zeros(2), "color": {},
             "color_order": [], "blur": 0.0}  # fmt: skip


def released_mapper(**overrides):
    args = dict(
        crop_size=96, crop_scale=1.5, rotation=np.pi, scale_jitter=0.2, center_jitter=0.1,
        color_jitter=[0.5, 0.5, 0.5, 0.15], blur_max_sigma=0.5, image_format="BGR",
        train_boxes="released", augmentation="released", joints3d_target="mano",
    )  # fmt: skip
    args.update(overrides)
    return HandObjectDatasetMapper(True, **args)


def record():
    """2D joints spanning [40, 30, 60, 50], control points spanning [55, 35, 85, 75] (px)."""
    rng = np.random.default_rng(3)
    joints2d = np.concatenate([[[40, 30], [60, 50]], rng.uniform([41, 31], [59, 49], (19, 2))])
    points2d = np.concatenate([[[55, 35], [85, 75]], rng.uniform([56, 36], [84, 74], (19, 2))])
    return {
        "file_name": "unused.png", "image_id": "seq/0000", "height": HEIGHT, "width": WIDTH,
        "camera_K": K,
        "annotations": [
            {"category_id": 0, "bbox": [38, 28, 62, 52], "bbox_mode": BoxMode.XYXY_ABS,
             "joints2d": joints2d, "joints3d": rng.normal(0, 0.05, (21, 3)) + [0, 0, 0.5],
             "mano_pose": rng.normal(0, 0.2, 48), "mano_shape": rng.normal(0, 0.5, 10)},
            {"category_id": 1, "bbox": [50, 30, 90, 80], "bbox_mode": BoxMode.XYXY_ABS,
             "object_R": np.eye(3), "object_t": [0.0, 0.0, 0.5],
             "control_points3d": rng.normal(0, 0.05, (21, 3)), "control_points2d": points2d},
        ],
    }  # fmt: skip


def test_released_training_boxes_and_crop_by_hand():
    """Crop: joint box [40, 30, 60, 50] x1.5 = [35, 25, 65, 55] and control-point box
    [55, 35, 85, 75] x1.5 = [47.5, 25, 92.5, 85]; union [35, 25, 92.5, 85], centre (63, 55)
    truncated, side 60 -> [33, 25, 93, 85], 1.6 input px per image px. Hand box: joints at
    [11.2, 8, 43.2, 40], centre (27, 24) truncated, x1.1 -> [9.4, 6.4, 44.6, 41.6]. Object box:
    [35.2, 16, 83.2, 80], centre (59, 48) -> [35, 16, 83, 80]."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    out = released_mapper().map(record(), image, params=NO_JITTER)
    gt = out["hand_object"]
    assert np.allclose(gt.gt_hand_boxes.tensor[0], [9.4, 6.4, 44.6, 41.6], atol=1e-4)
    assert np.allclose(gt.gt_object_boxes.tensor[0], [35, 16, 83, 80], atol=1e-4)
    crop = np.array([[1.6, 0, -1.6 * 33], [0, 1.6, -1.6 * 25], [0, 0, 1]])
    assert np.allclose(out["image_to_input"].numpy(), crop, atol=1e-5)
    assert np.allclose(out["camera_K"].numpy(), crop @ K, atol=1e-4)
    assert np.allclose(gt.gt_joints2d[0, 0], [(40 - 33) * 1.6, (30 - 25) * 1.6], atol=1e-4)
    # 3D joints come from MANO(pose, shape) in the loss: the annotated ones are not passed on.
    assert gt.gt_has_mano[0] and not gt.gt_has_joints3d[0]


def test_released_jitter_and_rotation_by_hand():
    """Centre (63, 55) + (0.1, -0.05) x the unjittered side 60 = (69, 52); side 60 x 1.2 = 72;
    the image turns a quarter about the principal point (83, 57.5) and that centre lands on the
    input's centre (48, 48): the principal point, (14, 5.5) px from the centre before the turn,
    is (-5.5, 14) px from it after, i.e. (48 - 5.5 s, 48 + 14 s) with s = 96 / 72."""
    params = dict(NO_JITTER, angle=np.pi / 2, scale=1.2, center_offset=np.array([0.1, -0.05]))
    out = released_mapper().map(record(), np.zeros((HEIGHT, WIDTH, 3), np.uint8), params=params)
    M = out["image_to_input"].double().numpy()
    s = 96 / 72
    assert np.allclose(M[:2, :2], s * np.array([[0, -1], [1, 0]]), atol=1e-6)
    assert np.allclose(M @ [69, 52, 1], [48, 48, 1], atol=1e-4)
    assert np.allclose(M @ [83, 57.5, 1], [48 - s * 5.5, 48 + s * 14, 1], atol=1e-4)


def test_released_draws():
    augmentation = ReleasedAugmentation(np.pi, 0.2, 0.1, [0.5, 0.5, 0.5, 0.15], 0.5)
    rng = np.random.default_rng(0)
    draws = [augmentation.sample(rng) for _ in range(4000)]
    scales = np.array([d["scale"] for d in draws])
    assert scales.min() >= 0.8 and scales.max() <= 1.2
    # 1 + 0.2 N(0, 1) clipped: P(|N| > 1) = 0.317 of the draws sit on the bounds.
    assert abs(np.mean((scales == 0.8) | (scales == 1.2)) - 0.317) < 0.03
    offsets = np.array([d["center_offset"] for d in draws])
    assert np.abs(offsets).max() <= 0.1 and abs(offsets.std() - 0.1 / np.sqrt(3)) < 0.003
    orders = {tuple(d["color_order"]) for d in draws}
    assert all(sorted(o) == ["brightness", "contrast", "hue", "saturation"] for o in orders)
    assert len(orders) == 24
    assert all(abs(d["color"]["hue"]) <= 0.15 and 0 <= d["blur"] <= 0.5 for d in draws)


def test_released_render_uses_pil_pixel_corners_and_nearest():
    """Input pixel of output pixel (x, y) under a 2x crop from (10, 10): the one holding the
    pixel-corner point ((x + 0.5) / 2 + 10, (y + 0.5) / 2 + 10)."""
    augmentation = ReleasedAugmentation(0.0, 0.0, 0.0, [0, 0, 0, 0], 0.0)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    M = np.array([[2.0, 0, -20], [0, 2.0, -20], [0, 0, 1]])
    out = augmentation.render(image, M, 96, NO_JITTER)
    index = np.floor((np.arange(96) + 0.5) / 2 + 10).astype(int)
    assert np.array_equal(out, image[index[:, None], index[None, :]])
    darker = augmentation.render(image, M, 96, dict(NO_JITTER, color={"brightness": 0.5},
                                                    color_order=["brightness"]))  # fmt: skip
    assert np.abs(darker.astype(float) - out * 0.5).max() <= 1.0


def test_mano_target_keeps_joints_of_records_without_mano():
    pseudo = record()
    hand = pseudo["annotations"][0]
    del hand["mano_pose"], hand["mano_shape"]
    out = released_mapper().map(pseudo, np.zeros((HEIGHT, WIDTH, 3), np.uint8), params=NO_JITTER)
    assert out["hand_object"].gt_has_joints3d[0] and not out["hand_object"].gt_has_mano[0]


def test_torchvision_resnet50_lands_in_the_released_backbone(tmp_path):
    """A random torchvision ResNet-50 on disk, converted: our res5 equals torchvision's layer4
    with its ReLUs turned into the released LeakyReLUs; the MANO regressor starts as the
    released code's (torch.nn.Linear's default), the MANO buffers stay out of the file."""
    torchvision = pytest.importorskip("torchvision")
    from tools import convert_released_checkpoint

    torch.manual_seed(0)
    reference = torchvision.models.resnet50().eval()
    with torch.no_grad():  # non-trivial norms, so that a misplaced one shows
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    src, dst = tmp_path / "resnet50-0676ba61.pth", tmp_path / "start.pth"
    torch.save(reference.state_dict(), src)
    assert convert_released_checkpoint.main(
        ["--torchvision-resnet50", str(src), str(dst), "--config-file", RELEASED,
         "MODEL.DEVICE", "cpu"]
    ) == 0  # fmt: skip
    saved = torch.load(dst, weights_only=True)["model"]
    assert not any(".hand_layer." in k for k in saved)
    model = build_model(setup_cfg(RELEASED, ["MODEL.DEVICE", "cpu"]))
    model.load_state_dict(saved, strict=False)
    model.eval()
    for module in reference.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.LeakyReLU(0.01))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours = model.backbone.bottom_up(x)["res5"]
        r = reference
        theirs = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # The older file (resnet50-19c8e357.pth) has no BatchNorm step counters: the same weights.
    older = {k: v for k, v in reference.state_dict().items() if "num_batches_tracked" not in k}
    converted, _ = convert_torchvision_resnet50(older, model.state_dict())
    assert all(torch.equal(v, saved[k]) for k, v in converted.items())
    assert len(converted) == len(older) - 2  # all but the classifier's weight and bias
    # torch.nn.Linear's default: weights and bias within 1 / sqrt(fan_in); ours would put the
    # identity rotation (1, 0, 0, 0, 1, 0) in the bias.
    pose = saved["roi_heads.hand_head.mesh_head.pose.bias"]
    bound = 1 / np.sqrt(saved["roi_heads.hand_head.mesh_head.pose.weight"].shape[1])
    assert pose.abs().max() <= bound and pose.abs().max() > 0.5 * bound


def test_torchvision_converter_rejects_other_files(tmp_path, capsys):
    from tools import convert_released_checkpoint

    src = tmp_path / "not_resnet.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, src)
    argv = ["--torchvision-resnet50", str(src), str(tmp_path / "x.pth"), "--config-file",
            RELEASED]  # fmt: skip
    assert convert_released_checkpoint.main(argv) == 1
    assert "encoder.weight is not a torchvision ResNet-50 key" in capsys.readouterr().err


def test_released_optimizer_decays_every_parameter():
    narrow = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
              "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.WIDTH_PER_GROUP", "16",
              "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.HANDOBJ.HAND.HOURGLASS_PLANES", "32",
              "MODEL.HANDOBJ.HAND.MESH_CHANNELS", "64"]  # fmt: skip
    cfg = setup_cfg(RELEASED, narrow)
    model = build_model(cfg)
    optimizer = HandObjectTrainer.build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.Adam)
    groups = optimizer.param_groups
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["weight_decay"] for g in groups} == {5e-4} and {g["lr"] for g in groups} == {1e-4}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.weight.requires_grad for m in norms)  # BN, nothing frozen


def test_epoch_schedule_by_hand():
    """50 records in batches of 24: ceil(50 / 24) = 3 iterations per epoch; 4 epochs with a
    step every 2 -> STEPS (6,), MAX_ITER 12; lr 1e-4 for iterations 0-5, 0.7e-4 from 6."""
    name = "test_released_training_50_records"
    if name not in DatasetCatalog.list():
        box = {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
        DatasetCatalog.register(name, lambda: [
            {"file_name": f"{i}.png", "image_id": i, "annotations": [copy.deepcopy(box)]}
            for i in range(50)
        ])  # fmt: skip
    cfg = setup_cfg(RELEASED, ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
                               "SOLVER.HANDOBJ.EPOCHS", "4", "SOLVER.HANDOBJ.STEP_EPOCHS", "2"])
    scheduled = apply_epoch_schedule(cfg)
    assert tuple(scheduled.SOLVER.STEPS) == (6,) and scheduled.SOLVER.MAX_ITER == 12
    assert scheduled.is_frozen() and cfg.SOLVER.MAX_ITER == 40000  # the input is kept
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = build_lr_scheduler(scheduled, optimizer)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert np.allclose(lrs, [1e-4] * 6 + [0.7e-4] * 6)
    # 60 epochs of 10 as released, 66,034 records (HO3D v2 train) in batches of 24: 2,752 a
    # epoch.
    released = apply_epoch_schedule(setup_cfg(RELEASED), num_records=66034)
    assert released.SOLVER.MAX_ITER == 165120
    assert tuple(released.SOLVER.STEPS) == (27520, 55040, 82560, 110080, 137600)
    # EPOCHS 0: STEPS / MAX_ITER as given; both at once is refused.
    plain = setup_cfg(RELEASED, ["SOLVER.HANDOBJ.EPOCHS", "0", "SOLVER.MAX_ITER", "7"])
    assert apply_epoch_schedule(plain) is plain and plain.SOLVER.MAX_ITER == 7
    with pytest.raises(HandObjectConfigError, match="Set SOLVER.HANDOBJ.EPOCHS 0"):
        setup_cfg(RELEASED, ["SOLVER.MAX_ITER", "7"])


@pytest.mark.parametrize(
    "opts, problem",
    [
        (["MODEL.BACKBONE.FREEZE_AT", "2"], "FREEZE_AT 2 freezes the stem"),
        (["MODEL.RESNETS.NORM", "FrozenBN"], 'NORM "FrozenBN" fixes every backbone norm'),
        (["MODEL.RESNETS.NORM", "FrozenBN", "MODEL.WEIGHTS", "teacher.pth",
          "SEMI.PSEUDO_LABEL_FILES", "('p.json',)", "SEMI.STUDENT_INIT", "scratch"],
         "FrozenBN"),
    ],
)  # fmt: skip
def test_setup_cfg_refuses_frozen_random_layers(opts, problem):
    with pytest.raises(HandObjectConfigError) as error:
        setup_cfg("configs/HO3D-v2/handobj_R50_FPN.yaml", opts)
    message = str(error.value)
    assert problem in message and "MODEL.BACKBONE.FREEZE_AT 0" in message
    assert 'MODEL.RESNETS.NORM "BN"' in message and "handobj_R50_FPN.yaml" in message


def test_imagenet_weights_keep_frozen_bn():
    cfg = setup_cfg("configs/HO3D-v2/handobj_R50_FPN.yaml", [
        "MODEL.WEIGHTS", "detectron2://ImageNet/MSRA/R-50.pkl", "MODEL.RESNETS.NORM", "FrozenBN",
        "MODEL.BACKBONE.FREEZE_AT", "2"])  # fmt: skip
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN"


CONFIGS = sorted(
    str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")
)


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_starts_coherently(config):
    """Every shipped config loads; those that start from random weights train every layer."""
    cfg = setup_cfg(config)
    if not cfg.MODEL.WEIGHTS:
        assert cfg.MODEL.BACKBONE.FREEZE_AT == 0 and cfg.MODEL.RESNETS.NORM != "FrozenBN"
    if cfg.MODEL.RESNETS.DEPTH == 50:  # the paper's schedule, in epochs
        assert (cfg.SOLVER.HANDOBJ.EPOCHS, cfg.SOLVER.HANDOBJ.STEP_EPOCHS) == (60, 10)
        assert cfg.SOLVER.GAMMA == 0.7 and cfg.SOLVER.IMS_PER_BATCH == 24


def test_released_config_is_the_released_recipe():
    cfg = setup_cfg(RELEASED)
    h = cfg.INPUT.HANDOBJ
    assert (h.TRAIN_BOXES, h.TEST_BOXES, h.AUGMENTATION, h.JOINTS3D_TARGET) == (
        "released", "released", "released", "mano")  # fmt: skip
    assert tuple(cfg.MODEL.MANO.FINGERTIP_VERTICES) == (728, 353, 442, 576, 694)
    s = cfg.SOLVER
    assert s.WEIGHT_DECAY_NORM == s.WEIGHT_DECAY == s.WEIGHT_DECAY_BIAS == 5e-4
    assert (s.OPTIMIZER, s.BASE_LR, s.WARMUP_ITERS) == ("ADAM", 1e-4, 0)
    assert (h.SCALE_JITTER, h.CENTER_JITTER, h.BLUR_MAX_SIGMA) == (0.2, 0.1, 0.5)
    assert list(h.COLOR_JITTER) == [0.5, 0.5, 0.5, 0.15] and h.ROTATION == pytest.approx(np.pi)
