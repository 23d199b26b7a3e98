"""HandObjectRCNN on the tiny config: output format, gradients, losses, overfitting, both ways
of getting boxes at inference."""

import copy
import math

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from model_inputs import FIXTURE_MANO, make_sample
from torch import nn

from handobj_d2.data.dataset_mapper import hand_object_instances
from handobj_d2.engine import setup_cfg
from handobj_d2.geometry import axis_angle_to_matrix
from handobj_d2.mano import HandLayer
from handobj_d2.modeling import select_hand_object_pair
from handobj_d2.modeling.hand_head import scale_gradient
from handobj_d2.modeling.heatmaps import HeatmapHead, heatmap_confidence
from handobj_d2.modeling.losses import (
    control_point_heatmap_losses,
    gaussian_heatmaps,
    hand_losses,
    heatmap_divergence,
    labelled_mean,
    loss_weights,
    voting_losses,
)

TINY = "configs/synthetic/handobj_tiny.yaml"
POSE_LOSSES = (
    "loss_joints2d",
    "loss_vertices3d",
    "loss_joints3d",
    "loss_mano_pose",
    "loss_mano_shape",
    "loss_shape_regularizer",
    "loss_pose_regularizer",
    "loss_object_heatmap",
    "loss_object_points",
)


def tiny_cfg(*opts):
    return setup_cfg(TINY, ["MODEL.MANO.MODEL_PATH", FIXTURE_MANO, *opts])


def tiny_model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*opts))


@pytest.fixture(scope="module")
def hand_layer():
    return HandLayer(FIXTURE_MANO)


def _without_hand_labels(sample, keep_joints3d=False):
    sample = copy.deepcopy(sample)
    sample["hand_object"].gt_has_mano[:] = False
    sample["hand_object"].gt_has_joints3d[:] = keep_joints3d
    return sample


def _train_losses(model, batch):
    with EventStorage(0):
        return model(batch)


def _batchnorm_eval(model):
    """Training mode with BatchNorm on running statistics: a sample's losses then do not depend
    on the other samples of the batch."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


# ---------------------------------------------------------------------------------------------
# Inference


def test_given_box_inference_on_two_images_of_different_sizes(hand_layer):
    model = tiny_model().eval()
    rng = np.random.default_rng(0)
    a = make_sample(hand_layer, rng, 128, 128, "a")
    b = make_sample(hand_layer, rng, 96, 112, "b")
    # b is a crop of a 300 x 250 original: input = 0.5 * original - (20, 15).
    b["image_to_input"] = np.array([[0.5, 0, -20], [0, 0.5, -15], [0, 0, 1]], np.float32)
    b["height"], b["width"] = 250, 300
    for x in (a, b):
        pair = x.pop("hand_object")
        x["hand_box"], x["object_box"] = (
            pair.gt_hand_boxes.tensor[0],
            pair.gt_object_boxes.tensor[0],
        )
        x["control_points3d"] = pair.gt_control_points3d[0]
    with torch.no_grad():
        outputs = model([a, b])
    assert len(outputs) == 2
    shapes = {
        "scores": (1,),
        "pred_classes": (1,),
        "pred_has_object": (1,),
        "object_scores": (1,),
        "pred_joints2d": (1, 21, 2),
        "pred_joints2d_conf": (1, 21),
        "pred_mano_pose": (1, 48),
        "pred_mano_shape": (1, 10),
        "pred_joints3d": (1, 21, 3),
        "pred_vertices": (1, 778, 3),
        "pred_control_points2d": (1, 21, 2),
        "pred_control_points_conf": (1, 21),
        "pred_control_point_votes": (1, 21, 1, 2),  # the tiny config: HeatmapObjectHead
        "pred_control_point_votes_valid": (1, 21, 1),
        "pred_object_R": (1, 3, 3),
        "pred_object_t": (1, 3),
        "pred_object_pose_valid": (1,),
    }
    for out, x, scale, offset in ((outputs[0], a, 1.0, [0, 0]), (outputs[1], b, 2.0, [20, 15])):
        ho = out["instances"]
        assert ho.image_size == (x["height"], x["width"])
        assert set(ho.get_fields()) == set(shapes) | {"pred_boxes", "pred_object_boxes"}
        for name, shape in shapes.items():
            assert tuple(ho.get(name).shape) == shape, name
            if name != "pred_control_point_votes":  # invalid votes may lie anywhere
                assert torch.isfinite(ho.get(name).float()).all(), name
        assert ho.pred_classes.tolist() == [0] and ho.pred_has_object.tolist() == [True]
        assert ho.pred_object_pose_valid.dtype == torch.bool
        # 2D back in original pixels: the inverse of image_to_input, by hand.
        offset4 = np.tile(offset, 2)
        hand_box = (np.asarray(x["hand_box"]) + offset4) * scale
        object_box = (np.asarray(x["object_box"]) + offset4) * scale
        np.testing.assert_allclose(ho.pred_boxes.tensor[0], hand_box, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(ho.pred_object_boxes.tensor[0], object_box, rtol=1e-5, atol=1e-3)
        joints = ho.pred_joints2d[0].numpy()
        assert (joints >= hand_box[:2] - 1e-3).all() and (joints <= hand_box[2:] + 1e-3).all()
        assert ((ho.pred_joints2d_conf >= 0) & (ho.pred_joints2d_conf <= 1)).all()
        assert ((ho.pred_control_points_conf >= 0) & (ho.pred_control_points_conf <= 1)).all()
        # The reported MANO parameters give the reported mesh: wrist at 0, metres.
        vertices, joints3d = hand_layer(ho.pred_mano_pose, ho.pred_mano_shape)
        torch.testing.assert_close(joints3d, ho.pred_joints3d, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(vertices, ho.pred_vertices, atol=1e-5, rtol=1e-4)
        assert ho.pred_joints3d[0, 0].abs().max() < 1e-6
        det = out["detections"]
        assert det.pred_classes.tolist() == [0, 1] and det.scores.tolist() == [1.0, 1.0]
        np.testing.assert_allclose(det.pred_boxes.tensor[0], hand_box, rtol=1e-5, atol=1e-3)


def test_detected_box_inference_pairs_the_best_hand_with_its_object():
    model = tiny_model(
        "MODEL.HANDOBJ.INFERENCE_BOXES",
        "detected",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        0.0,
    ).eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 96, "width": 128}])
    det, ho = out["detections"], out["instances"]
    hands, objects = det[det.pred_classes == 0], det[det.pred_classes == 1]
    assert len(hands) and len(objects)  # random weights, no score threshold
    assert len(ho) == 1
    best_hand = int(hands.scores.argmax())
    torch.testing.assert_close(ho.pred_boxes.tensor[0], hands.pred_boxes.tensor[best_hand])
    torch.testing.assert_close(ho.scores[0], hands.scores[best_hand])
    # The object with the largest IoU with that hand, computed here by hand.
    h = hands.pred_boxes.tensor[best_hand].numpy()
    ious = []
    for o in objects.pred_boxes.tensor.numpy():
        w = max(0.0, min(h[2], o[2]) - max(h[0], o[0]))
        ht = max(0.0, min(h[3], o[3]) - max(h[1], o[1]))
        inter = w * ht
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        ious.append(inter / (area(h) + area(o) - inter))
    assert ho.pred_object_boxes.tensor[0].tolist() in [
        objects.pred_boxes.tensor[i].tolist() for i in np.flatnonzero(np.isclose(ious, max(ious)))
    ]
    assert not ho.pred_object_pose_valid.any()  # no intrinsics given: no PnP


def test_roi_heads_follow_detectron2s_inference_contract():
    """``forward`` at inference returns (list[Instances], {}): the pose fields on the rows of
    the pairs the box head's detections give, as ``inference(do_postprocess=False)``."""
    model = tiny_model(
        "MODEL.HANDOBJ.INFERENCE_BOXES", "detected", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0
    ).eval()
    image = torch.randint(0, 256, (3, 96, 96), dtype=torch.uint8)
    with torch.no_grad():
        (plain,) = model.inference([{"image": image}], do_postprocess=False)
        images = model.preprocess_image([{"image": image}])
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
        (rows,), extra = model.roi_heads(images, features, proposals)
    assert extra == {} and isinstance(rows, Instances) and len(rows) == 1
    assert rows.pred_classes.tolist() == [0] and not rows.has("pred_object_R")
    torch.testing.assert_close(rows.pred_boxes.tensor, plain.pred_boxes.tensor)
    torch.testing.assert_close(rows.pred_joints3d, plain.pred_joints3d)


def test_no_hand_gives_empty_rows():
    model = tiny_model().eval()
    image = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
    objects_only = _detections([[10, 10, 40, 40], [20, 20, 60, 50]], [0.9, 0.8], [1, 1])
    with torch.no_grad():
        (out,) = model.inference(
            [{"image": image, "camera_K": np.eye(3)}], detected_instances=[objects_only]
        )
    ho = out["instances"]
    assert len(ho) == 0 and len(out["detections"]) > 0
    assert ho.pred_vertices.shape == (0, 778, 3) and ho.pred_object_pose_valid.shape == (0,)


def test_inference_on_given_detections_poses_their_pair(hand_layer):
    """``detected_instances`` (as GeneralizedRCNN.inference) replace the detector: the pair is
    the best hand and the object overlapping it most, with the PnP of the input's camera."""
    model = tiny_model("MODEL.HANDOBJ.INFERENCE_BOXES", "detected").eval()
    sample = make_sample(hand_layer, np.random.default_rng(8), 96, 96, "given")
    pair = sample["hand_object"]
    hand, obj = pair.gt_hand_boxes.tensor[0].tolist(), pair.gt_object_boxes.tensor[0].tolist()
    detections = _detections(
        [hand, obj, [0, 0, 5, 5], [0, 0, 4, 4]], [0.8, 0.7, 0.6, 0.9], [0, 1, 0, 1]
    )
    with torch.no_grad():
        (out,) = model.inference([sample], detected_instances=[detections])
        (plain,) = model.inference([sample], detected_instances=[detections[:2]])
    ho = out["instances"]
    assert ho.pred_boxes.tensor.tolist() == [hand]
    assert ho.pred_object_boxes.tensor.tolist() == [obj]
    torch.testing.assert_close(ho.scores, torch.tensor([0.8]))
    assert len(out["detections"]) == 4
    # The pose depends on the pair's boxes only, not on the other detections.
    torch.testing.assert_close(ho.pred_joints3d, plain["instances"].pred_joints3d)
    assert ho.pred_object_R.shape == (1, 3, 3)


def test_a_hand_without_object_gets_the_hand_decoder_alone(hand_layer):
    """Given a hand box and no object box: one row, the hand's outputs as with an object (the
    hand decoder never reads the contextual reasoning's output), no object fields."""
    model = tiny_model().eval()
    sample = make_sample(hand_layer, np.random.default_rng(3), 96, 96, "alone")
    pair = sample.pop("hand_object")
    hand_box, object_box = pair.gt_hand_boxes.tensor[0], pair.gt_object_boxes.tensor[0]
    sample["control_points3d"] = pair.gt_control_points3d[0]
    with torch.no_grad():
        (alone,) = model.inference([{**sample, "hand_box": hand_box}])
        (both,) = model.inference([{**sample, "hand_box": hand_box, "object_box": object_box}])
        batch = model.inference(
            [
                {**sample, "hand_box": hand_box, "object_box": object_box},
                {**sample, "hand_box": hand_box},
            ]
        )
    # In a batch beside a pair with an object: the same outputs as alone (float32 batches of
    # other sizes: rounding only; the object pose left out: RANSAC on an untrained model's
    # votes draws other samples each call).
    pose = {"pred_object_R", "pred_object_t", "pred_object_pose_valid"}
    for single, batched in ((both, batch[0]), (alone, batch[1])):
        for name, value in single["instances"].get_fields().items():
            if name in pose:
                continue
            value, other = (x.tensor if isinstance(x, Boxes) else x
                            for x in (value, batched["instances"].get(name)))  # fmt: skip
            torch.testing.assert_close(value, other, equal_nan=True, atol=1e-4, rtol=1e-3)
    rows = alone["instances"]
    assert len(rows) == 1 and rows.pred_has_object.tolist() == [False]
    assert alone["detections"].pred_classes.tolist() == [0]
    for name in ("pred_joints2d", "pred_joints3d", "pred_vertices", "pred_mano_pose"):
        torch.testing.assert_close(rows.get(name), both["instances"].get(name))
    for name in ("pred_object_boxes", "pred_control_points2d", "pred_object_R", "pred_object_t"):
        value = rows.get(name)
        assert torch.isnan(value.tensor if isinstance(value, Boxes) else value).all(), name
    assert rows.object_scores.tolist() == [0.0] and rows.pred_control_points_conf.eq(0).all()
    assert rows.pred_object_pose_valid.tolist() == [False]
    assert not rows.pred_control_point_votes_valid.any()
    assert both["instances"].pred_has_object.tolist() == [True]


def test_a_batch_of_hands_without_objects_trains(hand_layer):
    """Hand-only samples (``gt_has_object`` False): finite hand losses, zero object losses
    that keep the graph, a finite gradient into the hand decoder."""
    model = tiny_model().train()
    rng = np.random.default_rng(4)
    batch = []
    for i in range(2):
        sample = make_sample(hand_layer, rng, 96, 96, str(i))
        full = sample["hand_object"]
        sample["hand_object"] = hand_object_instances(
            (96, 96),
            {
                "box": full.gt_hand_boxes.tensor[0].numpy(),
                "joints2d": full.gt_joints2d[0].numpy(),
                "joints3d": full.gt_joints3d[0].numpy(),
                "has_joints3d": True,
            },
        )
        sample["instances"] = sample["instances"][:1]
        batch.append(sample)
    losses = _train_losses(model, batch)
    assert losses["loss_object_heatmap"] == 0 and losses["loss_object_points"] == 0
    assert losses["loss_joints2d"] > 0 and losses["loss_joints3d"] > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.hand_head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_pose_on_false_is_the_detector_alone(hand_layer):
    model = tiny_model("MODEL.HANDOBJ.POSE_ON", "False", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    sample = make_sample(hand_layer, np.random.default_rng(5), 96, 96, "det")
    losses = _train_losses(model.train(), [sample])
    assert "loss_cls" in losses and not set(POSE_LOSSES) & set(losses)
    with torch.no_grad():
        (out,) = model.eval().inference([sample])
    assert set(out) == {"instances"} and len(out["instances"])
    assert set(out["instances"].get_fields()) == {"pred_boxes", "scores", "pred_classes"}


def _detections(boxes, scores, classes):
    return Instances(
        (100, 100),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        scores=torch.tensor(scores),
        pred_classes=torch.tensor(classes),
    )


def test_pair_selection_rules():
    detections = _detections(
        [
            [0, 0, 20, 20],  # hand, 0.9
            [50, 50, 70, 70],  # hand, 0.95: the best hand
            [60, 50, 80, 70],  # object, IoU 1/3 with the best hand, 0.3
            [40, 50, 60, 70],  # object, IoU 1/3, 0.6: wins the tie on score
            [0, 0, 20, 21],  # object, IoU 0 with the best hand, 0.99
        ],
        [0.9, 0.95, 0.3, 0.6, 0.99],
        [0, 0, 1, 1, 1],
    )
    pair = select_hand_object_pair(detections, 0.05)
    assert len(pair) == 1
    assert pair.pred_boxes.tensor[0].tolist() == [50, 50, 70, 70]
    assert pair.scores.tolist() == pytest.approx([0.95]) and pair.pred_has_object.tolist() == [True]
    assert pair.pred_object_boxes.tensor[0].tolist() == [40, 50, 60, 70]
    assert math.isclose(float(pair.object_scores[0]), 0.6, rel_tol=1e-6)
    # Objects below the score threshold do not count; with none left the hand is alone; with
    # no hand there is no row.
    pair = select_hand_object_pair(detections, 0.7)
    assert pair.pred_object_boxes.tensor[0].tolist() == [0, 0, 20, 21]
    alone = select_hand_object_pair(detections[:2], 0.0)
    assert alone.pred_boxes.tensor.tolist() == [[50, 50, 70, 70]]
    assert alone.pred_has_object.tolist() == [False] and alone.object_scores.tolist() == [0.0]
    assert torch.isnan(alone.pred_object_boxes.tensor).all()
    assert len(select_hand_object_pair(detections, 0.999)) == 0


def test_given_mode_without_boxes_is_a_clear_error():
    model = tiny_model().eval()
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    with pytest.raises(ValueError, match="hand_box.*detected"):
        model([{"image": image, "image_id": "frame7"}])


# ---------------------------------------------------------------------------------------------
# Training


def test_backward_reaches_every_head(hand_layer):
    model = tiny_model().train()
    rng = np.random.default_rng(1)
    batch = [make_sample(hand_layer, rng, 96, 96, str(i)) for i in range(2)]
    losses = _train_losses(model, batch)
    assert {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"} <= set(losses)
    assert set(POSE_LOSSES) <= set(losses)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    sum(losses.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    heads = model.roi_heads
    for module in (
        model.backbone.bottom_up,
        model.backbone,
        model.proposal_generator,
        heads.box_head,
        heads.box_predictor,
        heads.contextual_reasoning,
        heads.hand_head.heatmap_head,
        heads.hand_head.mesh_head,
        heads.object_head,
    ):
        assert sum(p.grad.abs().sum() for p in module.parameters()) > 0, type(module).__name__


def test_labels_a_sample_lacks_give_no_loss(hand_layer):
    model = _batchnorm_eval(tiny_model())
    rng = np.random.default_rng(2)
    full = make_sample(hand_layer, rng, 96, 96, "full")
    bare = _without_hand_labels(make_sample(hand_layer, rng, 96, 96, "bare"))
    bare["hand_object"].gt_has_object_pose[:] = False
    alone = _train_losses(model, [full])
    mixed = _train_losses(model, [full, bare])
    # The bare sample adds nothing to the MANO and object losses: the means stay those of
    # the labelled sample (its 2D joints still count).
    for name in (
        "loss_vertices3d",
        "loss_joints3d",
        "loss_mano_pose",
        "loss_mano_shape",
        "loss_object_heatmap",
        "loss_object_points",
    ):
        torch.testing.assert_close(mixed[name], alone[name], rtol=1e-4, atol=1e-6)
    assert not torch.isclose(mixed["loss_joints2d"], alone["loss_joints2d"])
    bare_only = _train_losses(model, [bare])
    for name in POSE_LOSSES[1:]:
        assert bare_only[name] == 0, name
    # A hand known by its box only (no 2D joints): no 2D joint loss either.
    boxed = copy.deepcopy(bare)
    boxed["hand_object"].gt_has_joints2d[:] = False
    assert _train_losses(model, [boxed])["loss_joints2d"] == 0
    torch.testing.assert_close(
        _train_losses(model, [full, boxed])["loss_joints2d"], alone["loss_joints2d"],
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip
    # A sample with neither hand nor object: every pose loss is zero, backward still runs.
    empty = {**bare, "hand_object": hand_object_instances((96, 96))}
    losses = _train_losses(model, [empty])
    assert all(losses[name] == 0 for name in POSE_LOSSES)
    sum(losses.values()).backward()


def test_frozen_bn_keeps_the_checkpoint_statistics_in_training(hand_layer, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.layers import FrozenBatchNorm2d

    trained = tiny_model()
    generator = torch.Generator().manual_seed(7)
    for module in trained.modules():  # statistics a checkpoint could hold, not the init's 0 / 1
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("teacher")
    frozen = tiny_model("MODEL.HANDOBJ.FROZEN_BN", "True", seed=1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in frozen.modules())
    frozen_count = sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
    batchnorm_count = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in trained.modules())
    assert frozen_count == batchnorm_count > 0
    DetectionCheckpointer(frozen).load(str(tmp_path / "teacher.pth"))
    rng = np.random.default_rng(4)
    batch = [make_sample(hand_layer, rng, 96, 96, str(i)) for i in range(2)]
    torch.manual_seed(0)
    expected = _train_losses(_batchnorm_eval(trained), batch)
    torch.manual_seed(0)
    frozen.train()
    losses = _train_losses(frozen, batch)
    # In training mode the frozen model normalises with the checkpoint's running statistics,
    # exactly as the original model with its BatchNorm layers in eval mode, and keeps them.
    for name in POSE_LOSSES:
        torch.testing.assert_close(losses[name], expected[name], rtol=1e-4, atol=1e-6)
    statistics = {k: v for k, v in trained.state_dict().items() if "running_" in k}
    for key, value in statistics.items():
        torch.testing.assert_close(frozen.state_dict()[key], value, msg=key)


def test_pseudo_labels_use_joints_and_regularisers_scaled_by_their_weight(hand_layer):
    model = _batchnorm_eval(tiny_model())
    rng = np.random.default_rng(3)
    pseudo = _without_hand_labels(make_sample(hand_layer, rng, 96, 96, "p"), keep_joints3d=True)
    pseudo["hand_object"].gt_has_object_pose[:] = False
    losses = _train_losses(model, [pseudo])
    for name in ("loss_vertices3d", "loss_mano_pose", "loss_mano_shape", "loss_object_points"):
        assert losses[name] == 0, name
    for name in (
        "loss_joints2d",
        "loss_joints3d",
        "loss_shape_regularizer",
        "loss_pose_regularizer",
    ):
        assert losses[name] > 0, name
    # The pose regulariser pulls the 15 finger rotations to the identity (flat hand).
    # The mapper gives pseudo-labels the weight SEMI.PSEUDO_LOSS_WEIGHT (test_dataset_mapper).
    pseudo["hand_object"].gt_loss_weight[:] = 0.5
    half_losses = _train_losses(model, [pseudo])
    for name in POSE_LOSSES:
        torch.testing.assert_close(half_losses[name], 0.5 * losses[name], rtol=1e-4, atol=1e-8)


def test_single_batch_overfits(hand_layer):
    model = tiny_model().train()
    rng = np.random.default_rng(4)
    batch = [make_sample(hand_layer, rng, 64, 64, str(i)) for i in range(2)]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    totals = []
    with EventStorage(0):
        for _ in range(180):
            total = sum(model(batch).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            totals.append(total.item())
    assert np.isfinite(totals).all()
    assert np.mean(totals[-10:]) <= totals[0] / 10, (totals[0], totals[-10:])


def test_bad_label_shape_names_the_field():
    hand = {"box": [0, 0, 10, 10], "joints2d": np.zeros((20, 2))}
    with pytest.raises(ValueError, match="'bad'.*joints2d.*\\(21, 2\\)"):
        hand_object_instances((64, 64), hand, name="record 'bad'")


# ---------------------------------------------------------------------------------------------
# Pieces with closed-form answers


def test_soft_argmax_and_joint_confidence():
    head = HeatmapHead(8, 2, 4, 1, 1, 32)
    latents = torch.zeros(1, 2, 32, 32)
    latents[0, 0, 5, 9] = 60.0  # all the mass on row 5, column 9
    heatmaps, joints = head.soft_argmax(latents)
    torch.testing.assert_close(joints[0, 0], torch.tensor([9.5 / 32, 5.5 / 32]))
    torch.testing.assert_close(joints[0, 1], torch.tensor([0.5, 0.5]))  # uniform: the centre
    conf = heatmap_confidence(heatmaps, joints, radius=1.5)
    torch.testing.assert_close(conf[0, 0], torch.tensor(1.0))
    # Uniform map, joint on the corner of 4 cells: only those 4 cell centres (0.71 cells away)
    # lie within 1.5 cells; the next ones are sqrt(0.5^2 + 1.5^2) = 1.58 away.
    torch.testing.assert_close(conf[0, 1], torch.tensor(4 / 1024))
    # A larger inverse temperature sharpens the map.
    with torch.no_grad():
        head.inverse_temperature.fill_(2.0)
    latents[0, 1, 3, 3] = 3.0
    sharper, _ = head.soft_argmax(latents)
    assert sharper[0, 1, 3, 3] > heatmaps[0, 1, 3, 3]


def test_voting_loss_closed_form():
    weights = {"object_coords": 500.0, "object_confidence": 100.0}
    gt = torch.tensor([[[0.25, 0.75]]])  # 1 sample, 1 control point
    coords = gt[:, :, None, None].expand(1, 1, 2, 2, 2).clone()
    coords[0, 0, 0, 1] += torch.tensor([0.3, -0.4])  # the masked cell is 0.5 off
    mask = torch.tensor([[[False, True], [False, False]]])
    confidence = torch.zeros(1, 1, 2, 2)
    losses = voting_losses(
        {"coords": coords, "confidence": confidence}, gt, mask, torch.ones(1), weights
    )
    # |dx| + |dy| = 0.7 in 1 of 4 cells; confidence target exp(-0.5) there, 0 elsewhere.
    torch.testing.assert_close(losses["loss_object_coords"], torch.tensor(500 * 0.7 / 4))
    torch.testing.assert_close(
        losses["loss_object_confidence"], torch.tensor(100 * math.exp(-0.5) / 4)
    )
    no_pose = voting_losses(
        {"coords": coords, "confidence": confidence}, gt, mask, torch.zeros(1), weights
    )
    assert no_pose["loss_object_coords"] == 0 and no_pose["loss_object_confidence"] == 0


def test_heatmap_object_loss_closed_form():
    weights = {"object_heatmap": 10.0, "object_points": 100.0}
    # Point 0 on the centre of cell (row 10, column 6) of a 32 x 32 grid; point 1 far outside.
    gt = torch.tensor([[[6.5 / 32, 10.5 / 32], [3.0, 3.0]]])
    target, _ = gaussian_heatmaps(gt, 32, 1.0)
    uniform = torch.full((1, 2, 32, 32), 1 / 1024)
    # Stack 1 predicts the target heatmap 0.1 right and 0.2 up; stack 2 uniform at the right
    # place. Point 1 has no target: neither its heatmap nor its position counts.
    pred = {
        "heatmaps": [target, uniform],
        "control_points": [gt + torch.tensor([[[0.1, -0.2], [9.0, 9.0]]]), gt.clone()],
    }
    losses = control_point_heatmap_losses(pred, gt, torch.ones(1), weights, 1.0)
    t = target[0, 0][target[0, 0] > 0]
    uniform_kl = math.log(1024) + float((t * t.log()).sum())
    torch.testing.assert_close(losses["loss_object_heatmap"], torch.tensor(10 * uniform_kl / 2))
    torch.testing.assert_close(losses["loss_object_points"], torch.tensor(100 * 0.3 / 2))
    no_pose = control_point_heatmap_losses(pred, gt, torch.zeros(1), weights, 1.0)
    assert no_pose["loss_object_heatmap"] == 0 and no_pose["loss_object_points"] == 0


@pytest.mark.parametrize(
    "name, own, other",
    [
        (
            "VotingObjectHead",
            ("loss_object_coords", "loss_object_confidence"),
            "loss_object_points",
        ),
        ("HeatmapObjectHead", ("loss_object_heatmap", "loss_object_points"), "loss_object_coords"),
    ],
)
def test_each_object_head_trains_with_its_own_losses(hand_layer, name, own, other):
    model = tiny_model("MODEL.HANDOBJ.OBJECT.NAME", name).train()
    rng = np.random.default_rng(3)
    batch = [make_sample(hand_layer, rng, 96, 96, str(i)) for i in range(2)]
    losses = _train_losses(model, batch)
    assert set(own) <= set(losses) and other not in losses
    assert all(losses[k] > 0 for k in own)
    sum(losses.values()).backward()
    head = model.roi_heads.object_head
    assert type(head).__name__ == name
    assert sum(p.grad.abs().sum() for p in head.parameters()) > 0


def test_heatmap_object_head_votes_from_its_peaks():
    head = tiny_model("MODEL.HANDOBJ.OBJECT.NAME", "HeatmapObjectHead").roi_heads.object_head
    # One vote per control point: its soft-argmax position in pixels, with the heatmap mass
    # within CONFIDENCE_RADIUS = 1.5 cells as confidence (here all of it, on one cell).
    heatmaps = torch.zeros(1, 21, 32, 32)
    heatmaps[0, :, 8, 24] = 1.0
    points = torch.full((1, 21, 2), 0.0)
    points[..., 0], points[..., 1] = 24.5 / 32, 8.5 / 32
    box = torch.tensor([[10.0, 20.0, 74.0, 52.0]])  # 64 x 32 pixels
    pred = {"heatmaps": [heatmaps], "control_points": [points]}
    fields, (votes, valid) = head.inference(pred, box)
    confidence = fields["pred_control_points_conf"][..., None]
    assert votes.shape == (1, 21, 1, 2) and valid.all()
    expected = torch.tensor([10 + 64 * 24.5 / 32, 20 + 32 * 8.5 / 32])
    torch.testing.assert_close(votes[0, :, 0], expected.expand(21, 2))
    torch.testing.assert_close(confidence, torch.ones(1, 21, 1))
    torch.testing.assert_close(fields["pred_control_points2d"], votes[:, :, 0])


def test_unknown_object_head_is_named():
    with pytest.raises(KeyError, match="NoSuchHead"):
        tiny_model("MODEL.HANDOBJ.OBJECT.NAME", "NoSuchHead")


def test_labelled_mean_counts_only_labelled_samples():
    per_sample = torch.tensor([1.0, 3.0, 100.0])
    torch.testing.assert_close(
        labelled_mean(per_sample, torch.tensor([1.0, 0.5, 0.0])), torch.tensor(1.25)
    )
    assert labelled_mean(per_sample, torch.zeros(3)) == 0


def test_mesh_head_starts_near_the_flat_hand(hand_layer):
    head = tiny_model().roi_heads.hand_head
    with torch.no_grad():
        out = head(torch.randn(2, 32, 32, 32))
    eye = torch.eye(3).expand(2, 16, 3, 3)
    assert (out["rotmats"] - eye).abs().max() < 0.1
    flat_vertices, _ = hand_layer(torch.zeros(2, 48), torch.zeros(2, 10))
    assert (out["vertices"] - flat_vertices).norm(dim=-1).max() < 0.02  # metres
    assert axis_angle_to_matrix(torch.zeros(1, 3)).allclose(torch.eye(3))


def test_gaussian_heatmap_targets_and_their_divergence():
    sigma = 1.0
    # Joint on the centre of cell (row 10, column 6) of a 32 x 32 grid; one far outside the box.
    joints = torch.tensor([[[6.5 / 32, 10.5 / 32], [3.0, 3.0]]])
    target, valid = gaussian_heatmaps(joints, 32, sigma)
    assert valid.tolist() == [[True, False]] and target[0, 1].sum() == 0
    torch.testing.assert_close(target[0, 0].sum(), torch.tensor(1.0))
    # Cells within 3 sigma of a cell centre: offsets (dx, dy) with dx^2 + dy^2 <= 9, 29 of them;
    # weights exp(-d^2 / 2); the centre cell's share is 1 / their sum.
    offsets = [(dx, dy) for dx in range(-3, 4) for dy in range(-3, 4) if dx * dx + dy * dy <= 9]
    assert len(offsets) == 29 and int((target[0, 0] > 0).sum()) == 29
    total = sum(math.exp(-(dx * dx + dy * dy) / 2) for dx, dy in offsets)
    torch.testing.assert_close(target[0, 0, 10, 6], torch.tensor(1 / total))
    torch.testing.assert_close(target[0, 0, 10, 7], torch.tensor(math.exp(-0.5) / total))
    # KL(target || target) = 0; against a uniform map it is log(1024) - the target's entropy.
    zero = heatmap_divergence(target, target, valid)
    torch.testing.assert_close(zero, torch.zeros(1))
    uniform = torch.full((1, 2, 32, 32), 1 / 1024)
    t = target[0, 0][target[0, 0] > 0]
    expected = math.log(1024) + float((t * t.log()).sum())
    torch.testing.assert_close(heatmap_divergence(uniform, target, valid), torch.tensor([expected]))


def test_heatmap_loss_is_off_by_default_and_weighted_when_on(hand_layer):
    cfg = setup_cfg("configs/Base-HandObject-RCNN.yaml")
    assert cfg.MODEL.HANDOBJ.LOSS.HEATMAP == 0  # not in the released code
    joints = torch.full((1, 21, 2), 0.5 + 0.5 / 32)  # every joint on the centre of cell (16, 16)
    heatmaps = torch.full((1, 21, 32, 32), 1 / 1024)
    pred = {
        "heatmaps": [heatmaps],
        "joints2d": [joints],
        "rotmats": torch.eye(3).expand(1, 16, 3, 3),
        "mano_shape": torch.zeros(1, 10),
    }
    pred["vertices"], pred["joints3d"] = hand_layer.forward_rotmats(
        pred["rotmats"], pred["mano_shape"]
    )
    # A 64 x 64 px hand box at (10, 20): the joints in pixels.
    hand = {
        "box": [10.0, 20.0, 74.0, 84.0],
        "joints2d": (10 + 64 * joints[0]).numpy() + [0, 10],
        "joints3d": pred["joints3d"][0].numpy(),
        "has_joints3d": True,
        "mano_pose": np.zeros(48),
        "mano_shape": np.zeros(10),
        "has_mano": True,
    }
    gt = [hand_object_instances((96, 96), hand)]
    keys = [k for k in cfg.MODEL.HANDOBJ.LOSS if not k.startswith(("OBJECT", "HEATMAP_"))]
    weights = loss_weights(cfg, keys)
    assert "loss_heatmap" not in hand_losses(pred, gt, weights, hand_layer, 1.0)
    losses = hand_losses(pred, gt, {**weights, "heatmap": 2.0}, hand_layer, 1.0)
    offsets = [(dx, dy) for dx in range(-3, 4) for dy in range(-3, 4) if dx * dx + dy * dy <= 9]
    weights = [math.exp(-(dx * dx + dy * dy) / 2) for dx, dy in offsets]
    entropy = -sum(w / sum(weights) * math.log(w / sum(weights)) for w in weights)
    torch.testing.assert_close(losses["loss_heatmap"], torch.tensor(2 * (math.log(1024) - entropy)))
    assert losses["loss_joints2d"] == 0  # soft-argmax already on the joints


def test_mesh_input_gradient_scales_what_reaches_the_heatmap_branch():
    x = torch.ones(3, requires_grad=True)
    (scale_gradient(x, 0.25) * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 0.75))
    features = torch.randn(2, 32, 32, 32)

    def heatmap_branch_gradient(scale):
        head = tiny_model("MODEL.HANDOBJ.HAND.MESH_INPUT_GRADIENT", scale).roi_heads.hand_head
        head(features)["joints3d"].square().sum().backward()  # a loss on the mesh head only
        score = head.heatmap_head.stacks[-1]["score"].weight.grad
        mesh = head.mesh_head.pose.weight.grad
        return score, mesh

    score, mesh = heatmap_branch_gradient(1.0)
    assert score.abs().sum() > 0 and mesh.abs().sum() > 0
    score_half, mesh_half = heatmap_branch_gradient(0.5)  # same seed: same weights
    torch.testing.assert_close(score_half, score * 0.5)
    torch.testing.assert_close(mesh_half, mesh)
    score_zero, mesh_zero = heatmap_branch_gradient(0.0)
    assert score_zero is None and mesh_zero.abs().sum() > 0


def test_cpu_layout_channels_last_unless_backbone_norms_use_batch_statistics():
    """Channels-last on CPU for a backbone with fixed norms (FrozenBN, or BatchNorm in eval);
    the plain layout while the backbone's BatchNorms train on batch statistics."""
    from detectron2.layers import FrozenBatchNorm2d

    batch = [{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "height": 64, "width": 64}]
    channels_last = torch.channels_last
    model = tiny_model().train()  # BatchNorm, FREEZE_AT 0
    image = model.preprocess_image(batch).tensor
    assert image.is_contiguous() and not image.is_contiguous(memory_format=channels_last)
    model.eval()
    assert model.preprocess_image(batch).tensor.is_contiguous(memory_format=channels_last)
    model.backbone = FrozenBatchNorm2d.convert_frozen_batchnorm(model.backbone)
    model.train()
    assert model.preprocess_image(batch).tensor.is_contiguous(memory_format=channels_last)
