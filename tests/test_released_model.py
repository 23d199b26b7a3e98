"""The released-model variant (configs/HO3D-v2/handobj_R50_FPN_released.yaml) against a reference
of the authors' network written from their published structure (released_reference.py):
random weights in the reference, converted with tools/convert_released_checkpoint.py, both run on
the same images and boxes. Reduced widths (ResNet base 16, FPN / heads 64) keep it fast; the
layer structure is the released one."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from released_reference import ReleasedHONet, released_control_points
from torch import nn

from dev.benchmark import main as benchmark_main
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
from handobj_d2.data.datasets.ho3d import register_ho3d
from handobj_d2.engine import HandObjectPredictor, HandObjectTrainer, setup_cfg
from handobj_d2.geometry import HO3D_TO_MANOPTH, box_control_points
from handobj_d2.mano import load_mano_model
from handobj_d2.modeling.released_checkpoint import (
    ReleasedCheckpointError,
    convert_released_state_dict,
    released_state_dict,
)
from tools import convert_released_checkpoint
from tools.demo import main as demo_main

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/HO3D-v2/handobj_R50_FPN_released.yaml"
NARROW = {"width": 16, "channels": 64}
NARROW_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "16",
    "MODEL.FPN.OUT_CHANNELS", "64",
    "MODEL.HANDOBJ.HAND.HOURGLASS_PLANES", "32",
    "MODEL.HANDOBJ.HAND.MESH_CHANNELS", "64",
]  # fmt: skip
SIZE = 128
# Per image: hand box, object box (input pixels). The second pair does not intersect, so its
# intersection features are zero in both networks.
BOXES = [
    ([20.0, 30.0, 90.0, 110.0], [60.0, 20.0, 124.0, 100.0]),
    ([8.0, 64.0, 56.0, 120.0], [70.0, 10.0, 118.0, 60.0]),
]
OPENGL_TO_OPENCV = torch.tensor([1.0, -1.0, -1.0])
VOTE_TOPK, VOTE_CONF_THRESH = 10, 0.5


def _randomise(module, seed):
    """Random weights everywhere the constructor leaves constants: norms' statistics and
    affine parameters, biases, the heatmap temperatures. The heatmap and vote output layers are
    scaled up so that heatmaps are peaked and vote confidences spread across the 0.5
    threshold, as in a trained network."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(t, low, high):
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=generator) * std)

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                uniform(m.weight, 0.5, 1.5)
                normal(m.bias, 0.1)
            if isinstance(m, nn.BatchNorm2d):
                normal(m.running_mean, 0.1)
                uniform(m.running_var, 0.5, 1.5)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                normal(m.bias, 0.1)
        uniform(module.hand_head.betas, 0.5, 2.0)
        module.hand_head.score[0].weight.mul_(15)
        module.obj_head.out_conv.weight.mul_(15)


def _images(seed):
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)) for _ in BOXES]


def _our_point_order():
    """Index of each of our control points (geometry.box_control_points) among the released
    ones, matched by position on a box with distinct extents."""
    low, high = np.array([-0.01, -0.02, -0.03]), np.array([0.01, 0.02, 0.03])
    ours = torch.from_numpy(box_control_points(np.stack([low, high])))
    theirs = released_control_points(low, high)
    return [int((theirs == p).all(1).nonzero()) for p in ours]


def _cell_votes(x, y, conf, boxes):
    """Reference per-cell predictions (N, R, R, P), released point order -> pixels
    (N, P, R*R, 2), conf (N, P, R*R) in our point order."""
    size = boxes[:, 2:] - boxes[:, :2]
    px = x.flatten(1, 2).transpose(1, 2) * size[:, :1, None] + boxes[:, None, None, 0]
    py = y.flatten(1, 2).transpose(1, 2) * size[:, 1:, None] + boxes[:, None, None, 1]
    order = _our_point_order()
    return torch.stack([px, py], -1)[:, order], conf.flatten(1, 2).transpose(1, 2)[:, order]


def _released_pnp_points(votes, conf):
    """The released evaluation's PnP input (``utils/metric.fuse_test``): per control point the
    10 most confident cells, kept above 0.5. Returns per image a sorted (M, 3) array of
    (control point, x, y)."""
    out = []
    for image_votes, image_conf in zip(votes, conf):
        rows = []
        for point in range(image_conf.shape[0]):
            best = image_conf[point].argsort(descending=True)[:VOTE_TOPK]
            for cell in best[image_conf[point, best] > VOTE_CONF_THRESH]:
                rows.append([point, *image_votes[point, cell].tolist()])
        out.append(np.array(sorted(rows)).reshape(-1, 3))
    return out


def _weighted_points(votes, conf):
    """Our control_points2d definition applied to the reference's votes: confidence-weighted
    mean of the top-10 votes above 0.5, else the best vote."""
    top_conf, index = conf.topk(VOTE_TOPK, dim=-1)
    top = votes.gather(2, index[..., None].expand(-1, -1, -1, 2))
    weights = top_conf * (top_conf > VOTE_CONF_THRESH)
    total = weights.sum(-1, keepdim=True)
    mean = (top * weights[..., None]).sum(-2) / total.clamp_min(1e-12)
    return torch.where(total > 0, mean, top[..., 0, :])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(reference network, path of its state dict converted by the tool, the model config)."""
    torch.manual_seed(0)
    reference = ReleasedHONet(load_mano_model(""), **NARROW)
    _randomise(reference, seed=1)
    folder = tmp_path_factory.mktemp("released")
    src, dst = folder / "released.pth.tar", folder / "converted.pth"
    state = {f"honet.module.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"epoch": 60, "network": "honet_transformer", "state_dict": state}, src)
    argv = [str(src), str(dst), "--config-file", CONFIG, *NARROW_OPTS]
    assert convert_released_checkpoint.main(argv) == 0
    cfg = setup_cfg(CONFIG, NARROW_OPTS + ["MODEL.WEIGHTS", str(dst)])
    return reference.eval(), dst, cfg


def _run_both(converted, dtype):
    reference, weights, cfg = converted
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(str(weights))
    reference, model = reference.to(dtype), model.to(dtype)
    images = _images(seed=2)
    hand_boxes = torch.tensor([h for h, _ in BOXES], dtype=dtype)
    object_boxes = torch.tensor([o for _, o in BOXES], dtype=dtype)
    captured = {}
    hook = model.roi_heads.object_head.register_forward_hook(
        lambda module, args, out: captured.update(out)
    )
    inputs = [
        {"image": image, "height": SIZE, "width": SIZE, "hand_box": h, "object_box": o}
        for image, (h, o) in zip(images, BOXES)
    ]
    with torch.no_grad():
        # Model-input pixels (the inputs are the whole images, so no mapping back is needed).
        ours = model.inference(inputs, do_postprocess=False)
        ref = reference(torch.stack(images).to(dtype) / 255, hand_boxes, object_boxes)
    hook.remove()
    # Our PnP input: the votes the model's object head selects from its cells.
    _, (votes, valid) = model.roi_heads.object_head.inference(captured, object_boxes)
    captured["pnp_points"] = [
        np.array(sorted([p, *v.tolist()] for p, v in zip(ok.nonzero()[:, 0], image_votes[ok])))
        for image_votes, ok in zip(votes, valid)
    ]
    return ours, ref, captured, hand_boxes, object_boxes


def _max_differences(converted, dtype):
    ours, ref, captured, hand_boxes, object_boxes = _run_both(converted, dtype)
    cat = torch.cat
    hand_size = hand_boxes[:, 2:] - hand_boxes[:, :2]
    ref_joints2d = ref["joints2d"] * hand_size[:, None] + hand_boxes[:, None, :2]
    ref_votes, ref_conf = _cell_votes(
        ref["object_x"], ref["object_y"], ref["object_conf"], object_boxes
    )
    object_size = object_boxes[:, 2:] - object_boxes[:, :2]
    our_votes = captured["coords"].flatten(2, 3) * object_size[:, None, None]
    our_votes = our_votes + object_boxes[:, None, None, :2]
    our_pnp = captured["pnp_points"]
    ref_pnp = _released_pnp_points(ref_votes, ref_conf)
    assert [len(p) for p in our_pnp] == [len(p) for p in ref_pnp]
    assert all(np.array_equal(a[:, 0], b[:, 0]) for a, b in zip(our_pnp, ref_pnp))
    return {
        "joints2d_px": (cat([o.pred_joints2d for o in ours]) - ref_joints2d).abs().max(),
        "joints3d_mm": 1000
        * (cat([o.pred_joints3d for o in ours]) - ref["joints3d"] * OPENGL_TO_OPENCV.to(dtype))
        .abs()
        .max(),
        "vertices_mm": 1000
        * (cat([o.pred_vertices for o in ours]) - ref["vertices"] * OPENGL_TO_OPENCV.to(dtype))
        .abs()
        .max(),
        "object_cells_px": (our_votes - ref_votes).abs().max(),
        "object_confidence": (captured["confidence"].flatten(2) - ref_conf).abs().max(),
        "control_points2d_px": (
            cat([o.pred_control_points2d for o in ours]) - _weighted_points(ref_votes, ref_conf)
        )
        .abs()
        .max(),
        "pnp_points_px": max(np.abs(a[:, 1:] - b[:, 1:]).max() for a, b in zip(our_pnp, ref_pnp)),
    }


def test_outputs_are_not_trivial(converted):
    """The comparison means something: joints spread over the box, a posed hand, votes that
    pass the confidence threshold and differ between images."""
    _, ref, _, hand_boxes, _ = _run_both(converted, torch.float64)
    joints2d = ref["joints2d"]
    assert (joints2d.std(1) > 0.01).all()
    assert ref["joints3d"].abs().max() > 0.02  # metres from the wrist
    passing = (ref["object_conf"] > VOTE_CONF_THRESH).float().mean()
    assert 0.05 < passing < 0.95
    assert (joints2d[0] - joints2d[1]).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float64, 1e-3), (torch.float32, 0.05)], ids=["f64", "f32"]
)
def test_equal_to_released_network(converted, dtype, tolerance):
    """2D joints and object votes (px), root-relative 3D joints and vertices (mm, OpenCV frame
    after the released OpenGL output is changed back) agree."""
    differences = _max_differences(converted, dtype)
    for name, value in differences.items():
        assert float(value) <= tolerance, f"{name}: {float(value):.3g} > {tolerance} ({dtype})"


def test_converter_accepts_any_nesting():
    """Prefixes and nesting are unwrapped the same way whatever wraps the state dict."""
    tensor = torch.ones(2)
    for wrapped in (
        {"state_dict": {"honet.module.a.b": tensor}},
        {"state_dict": {"module.honet.a.b": tensor}},
        {"model": {"state_dict": {"a.b": tensor}}},
        {"module.a.b": tensor},
    ):
        assert list(released_state_dict(wrapped)) == ["a.b"]


def test_converter_fails_loudly(converted):
    """An unknown key, a shape mismatch and a missing key are all listed by name."""
    reference, _, cfg = converted
    model_state = build_model(cfg).state_dict()
    released = dict(reference.state_dict())
    released["hand_head.extra.weight"] = torch.zeros(1)
    released["transformer.layers.0.mlp.fc1.bias"] = torch.zeros(5)
    del released["transformer.layers.0.norm2.weight"]
    with pytest.raises(ReleasedCheckpointError) as error:
        convert_released_state_dict(released, model_state)
    message = str(error.value)
    assert "hand_head.extra.weight" in message
    assert "transformer.layers.0.mlp.fc1.bias (5,)" in message
    assert "roi_heads.contextual_reasoning.blocks.0.norm.weight" in message
    released = dict(reference.state_dict())
    released["mano_branch.coord_change_mat"] = torch.eye(3)
    with pytest.raises(ReleasedCheckpointError, match="diag"):
        convert_released_state_dict(released, model_state)


def test_converter_report(converted):
    """Every released tensor is mapped or dropped for a reason; the model keys left out are
    the detector's and the MANO layer's only."""
    reference, _, cfg = converted
    model_state = build_model(cfg).state_dict()
    released = reference.state_dict()
    converted_state, report = convert_released_state_dict(released, model_state)
    assert report["mapped"] + len(report["dropped"]) == len(released)
    dropped = set(report["dropped"])
    assert {"hand_head.uu", "hand_head.vv", "mano_branch.coord_change_mat"} <= dropped
    assert all(k.startswith(("hand_head.", "mano_branch.", "base_net.")) for k in dropped)
    left = {k.split(".")[0] + "." + k.split(".")[1] for k in report["not_in_checkpoint"]}
    assert left == {"proposal_generator.rpn_head", "roi_heads.box_head", "roi_heads.box_predictor",
                    "roi_heads.hand_head"}  # fmt: skip
    assert torch.equal(
        converted_state["roi_heads.hand_head.heatmap_head.inverse_temperature"],
        released["hand_head.betas"].reshape(-1),
    )


def test_converter_maps_the_released_widths():
    """At the released widths (ResNet-50 base 64, FPN and heads 256) every released tensor has
    its place, of the same shape, in the model of the released config."""
    released = ReleasedHONet(load_mano_model("")).state_dict()
    model_state = build_model(setup_cfg(CONFIG, ["MODEL.DEVICE", "cpu"])).state_dict()
    converted_state, report = convert_released_state_dict(released, model_state)
    assert report["mapped"] + len(report["dropped"]) == len(released)
    assert converted_state["backbone.bottom_up.res5.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert converted_state["roi_heads.hand_head.mesh_head.fc.0.weight"].shape == (1024, 1024)


def _demo_image(path, seed=3):
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (160, 120))
    assert cv2.imwrite(str(path), image)
    return image


def test_demo_with_given_boxes_matches_the_released_network(converted, tmp_path):
    """tools/demo.py on the converted model with --hand-box / --object-box: its 2D joints (image
    pixels) are the reference network's on the demo's own crop, mapped back to the image."""
    reference, weights, cfg = converted
    image = _demo_image(tmp_path / "photo.png")
    hand_box, object_box = [30.0, 20.0, 100.0, 90.0], [70.0, 40.0, 140.0, 110.0]
    opts = ["MODEL.WEIGHTS", str(weights), "INPUT.HANDOBJ.CROP_SIZE", "128", *NARROW_OPTS]
    code = demo_main(["--config-file", CONFIG, "--input", str(tmp_path / "photo.png"),
                      "--output", str(tmp_path / "out"), "--hand-box", *map(str, hand_box),
                      "--object-box", *map(str, object_box), *opts])  # fmt: skip
    assert code == 0
    (entry,) = json.loads((tmp_path / "out" / "predictions.json").read_text())
    (pair,) = entry["pairs"]
    np.testing.assert_allclose(pair["hand_box"], hand_box, atol=1e-3)

    predictor = HandObjectPredictor(setup_cfg(CONFIG, opts))
    request = predictor._complete({"image": image, "hand_box": hand_box, "object_box": object_box})
    record = predictor.model_input(request, predictor.crop_scale)
    crop = record["image"][None].float() / 255  # RGB, as the released network reads it
    boxes = [torch.as_tensor(record[k], dtype=torch.float32)[None] for k in ("hand_box", "object_box")]
    with torch.no_grad():
        ref = reference.float()(crop, *boxes)
    size = boxes[0][:, 2:] - boxes[0][:, :2]
    joints_crop = (ref["joints2d"] * size[:, None] + boxes[0][:, None, :2])[0].double().numpy()
    to_image = np.linalg.inv(np.asarray(record["image_to_input"], dtype=np.float64))
    joints_image = joints_crop @ to_image[:2, :2].T + to_image[:2, 2]
    np.testing.assert_allclose(pair["joints2d"], joints_image, atol=0.05)


def test_demo_boxes_file_and_missing_boxes(converted, tmp_path, capsys):
    """--boxes gives each image its pair; an image missing from the file, or no boxes at all
    for a model without a detector, is an error naming the problem."""
    _, weights, _ = converted
    for name in ("a.png", "b.png"):
        _demo_image(tmp_path / name)
    boxes = {
        "a.png": {"hand_box": [10, 10, 80, 90], "object_box": [50, 30, 150, 110]},
        str(tmp_path / "b.png"): {"hand_box": [60, 20, 120, 100], "object_box": [20, 40, 90, 100]},
    }
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    opts = ["MODEL.WEIGHTS", str(weights), "INPUT.HANDOBJ.CROP_SIZE", "128", *NARROW_OPTS]
    base = ["--config-file", CONFIG, "--output", str(tmp_path / "out")]
    inputs = ["--input", str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert demo_main(base + inputs + ["--boxes", str(tmp_path / "boxes.json"), *opts]) == 0
    entries = json.loads((tmp_path / "out" / "predictions.json").read_text())
    for entry, expected in zip(entries, boxes.values()):
        np.testing.assert_allclose(
            entry["pairs"][0]["object_box"], expected["object_box"], atol=1e-3
        )

    del boxes["a.png"]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    assert demo_main(base + inputs + ["--boxes", str(tmp_path / "boxes.json"), *opts]) == 1
    assert "no boxes for" in capsys.readouterr().err
    assert demo_main(base + inputs + opts) == 1
    assert "no trained detector" in capsys.readouterr().err


def test_benchmark_task_times_both_models(capsys):
    """dev/benchmark.py --task released_inference reports the released and the default model
    on the same settings (tiny here: the numbers themselves are the benchmark's business)."""
    argv = ["--task", "released_inference", "--image-size", "64", "--repeats", "1",
            "--warmup", "0", *NARROW_OPTS]  # fmt: skip
    assert benchmark_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["released"]["config_file"] == str(REPO / CONFIG)
    assert result["default"]["config_file"] == str(REPO / "configs/HO3D-v2/handobj_R50_FPN.yaml")
    for name in ("released", "default"):
        assert result[name]["image_size"] == 64 and result[name]["seconds_per_image"] > 0
    ratio = result["released"]["seconds_per_image"] / result["default"]["seconds_per_image"]
    assert result["released_over_default"] == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("width", "crop_box"), [(320, [74.5, 4.5, 279.5, 209.5]), (270, [74.5, 9.5, 269.5, 204.5])]
)
def test_mapper_released_test_boxes(width, crop_box):
    """INPUT.HANDOBJ.TEST_BOXES "released": boxes and crop of the released evaluation, by hand.
    Hand [100, 50, 200, 150] x1.1 -> [95, 45, 205, 155]. Control points over x 180..260,
    y 90..171: centre (220, 130) (130.5 truncated), box [180, 89.5, 260, 170.5]. Crop: union of
    [75, 25, 225, 175] and [160, 69.25, 280, 190.75], clipped to the image (x <= 270 in the
    second case), centre truncated, side = its longer side (205; 195 when clipped)."""
    points2d = np.stack([np.linspace(180, 260, 21), np.linspace(171, 90, 21)], 1)
    record = {
        "image_id": "evaluation/0000",
        "height": 240,
        "width": width,
        "camera_K": np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]),
        "annotations": [
            {"category_id": 0, "bbox": [100, 50, 200, 150], "bbox_mode": BoxMode.XYXY_ABS},
            {"category_id": 1, "bbox": [185, 95, 255, 165], "bbox_mode": BoxMode.XYXY_ABS,
             "object_R": np.eye(3), "object_t": [0.0, 0.0, 0.5],
             "control_points3d": np.zeros((21, 3)), "control_points2d": points2d},
        ],
    }  # fmt: skip
    cfg = setup_cfg(CONFIG, ["INPUT.HANDOBJ.CROP_SIZE", "128"])
    assert cfg.INPUT.HANDOBJ.TEST_BOXES == "released"
    mapper = HandObjectDatasetMapper(cfg, is_train=False)
    out = mapper.map(record, np.zeros((240, width, 3), np.uint8))
    to_image = np.linalg.inv(out["image_to_input"].double().numpy())

    def in_image(box):
        corners = np.asarray(box, np.float64).reshape(2, 2) @ to_image[:2, :2].T + to_image[:2, 2]
        return corners.reshape(4)

    np.testing.assert_allclose(
        in_image(out["hand_object"].gt_hand_boxes.tensor[0].numpy()), [95, 45, 205, 155], atol=1e-3
    )
    np.testing.assert_allclose(
        in_image(out["hand_object"].gt_object_boxes.tensor[0].numpy()),
        [180, 89.5, 260, 170.5],
        atol=1e-3,
    )
    np.testing.assert_allclose(in_image([0, 0, 128, 128]), crop_box, atol=1e-3)
    # Inference reads the protocol's boxes from the plain keys, which are these boxes.
    torch.testing.assert_close(out["hand_box"], out["hand_object"].gt_hand_boxes.tensor[0])
    torch.testing.assert_close(out["object_box"], out["hand_object"].gt_object_boxes.tensor[0])


def test_converter_reorders_heatmaps_from_ho3d_order(converted, tmp_path):
    """--joints2d-order ho3d: a released heatmap channel k is HO3D's joint k, so the converted
    model's manopth joint j is the reference's channel HO3D_TO_MANOPTH[j]; the mesh, whose
    encoder sees the heatmaps with its input channels reordered alike, does not change."""
    reference, _, cfg = converted
    src, dst = tmp_path / "released.pth", tmp_path / "converted_ho3d.pth"
    torch.save({"state_dict": reference.state_dict()}, src)
    argv = [str(src), str(dst), "--config-file", CONFIG, "--joints2d-order", "ho3d", *NARROW_OPTS]
    assert convert_released_checkpoint.main(argv) == 0
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(dst)
    ours, ref, _, hand_boxes, _ = _run_both((reference, dst, cfg), torch.float64)
    size = hand_boxes[:, 2:] - hand_boxes[:, :2]
    ref_joints2d = ref["joints2d"] * size[:, None] + hand_boxes[:, None, :2]
    joints2d = torch.cat([o.pred_joints2d for o in ours])
    torch.testing.assert_close(joints2d, ref_joints2d[:, HO3D_TO_MANOPTH], atol=1e-6, rtol=0)
    assert (joints2d - ref_joints2d).abs().max() > 1.0  # the order did change
    vertices = torch.cat([o.pred_vertices for o in ours])
    torch.testing.assert_close(
        vertices, ref["vertices"] * OPENGL_TO_OPENCV.double(), atol=1e-8, rtol=0
    )


def test_released_config_evaluates_an_ho3d_tree(converted, tiny_synthetic_root, tmp_path):
    """The converted model with the released config (released test boxes and crop) through the
    HO3D loader, the test mapper and the evaluators: hand and object metrics for every frame
    and the challenge's pred.json."""
    _, weights, cfg = converted
    name = "released_model_test_evaluation"
    register_ho3d(name, str(tiny_synthetic_root), "evaluation", "v2")
    try:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.merge_from_list(["INPUT.HANDOBJ.CROP_SIZE", "128", "DATASETS.TEST", f"('{name}',)"])
        model = build_model(cfg).eval()
        DetectionCheckpointer(model).load(str(weights))
        results = inference_on_dataset(
            model,
            HandObjectTrainer.build_test_loader(cfg, name),
            HandObjectTrainer.build_evaluator(cfg, name, str(tmp_path)),
        )
        frames = len(DatasetCatalog.get(name))
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert np.isfinite(results["hand"]["MPJPE_mm"]) and results["hand"]["MPJPE_mm"] > 0
    assert 0 <= results["object"]["pose_valid"] <= 100
    joints, vertices = json.loads((tmp_path / "pred.json").read_text())
    assert len(joints) == len(vertices) == frames > 0
