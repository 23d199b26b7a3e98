"""Pieces of make demo's job: stage progress with an ETA, time-budgeted training schedules
(the choice, not the speed: speed is measured by tools/benchmark.py), and the truncated
ResNet-FPN backbone of the fast tiny config."""

import json
import logging

import pytest
import torch
from detectron2.modeling import build_backbone, build_model

from handobj_d2.engine import budget, setup_cfg
from handobj_d2.utils.progress import StageProgress, format_seconds

FAST = "configs/synthetic/handobj_tiny_fast.yaml"
TINY = "configs/synthetic/handobj_tiny.yaml"


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_stage_progress_eta_follows_the_plan_and_corrects_itself(caplog):
    clock = FakeClock()
    progress = StageProgress([("data", 60), ("training", 240), ("demo", 10)], clock=clock)
    assert progress.eta_seconds() == 310
    with caplog.at_level(logging.INFO, logger="handobj_d2.utils.progress"):
        with progress.stage("data"):
            clock.now += 20
            assert progress.eta_seconds() == 40 + 240 + 10  # 40 s of the data's plan left
            clock.now += 70  # 30 s late: its plan is used up, not negative
            assert progress.eta_seconds() == 250
        assert progress.spent == {"data": 90}
        progress.replan("training", 100)
        with progress.stage("training"):
            clock.now += 30
            assert progress.eta_seconds() == 70 + 10
    assert progress.spent == {"data": 90, "training": 30}
    assert progress.eta_seconds() == 10
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "[1/3] data: starting, planned 1 min 00 s; 0 s elapsed, job ETA 5 min 10 s"
    assert lines[1] == "[1/3] data: done in 1 min 30 s; 1 min 30 s elapsed, job ETA 4 min 10 s"
    assert lines[2].startswith("[2/3] training: starting, planned 1 min 40 s; 1 min 30 s elapsed")
    assert lines[3] == "[2/3] training: done in 30 s; 2 min 00 s elapsed, job ETA 10 s"


def test_a_failing_stage_is_still_timed():
    clock = FakeClock()
    progress = StageProgress([("data", 60)], clock=clock)
    with pytest.raises(RuntimeError), progress.stage("data"):
        clock.now += 5
        raise RuntimeError("disk full")
    assert progress.spent == {"data": 5}


def test_format_seconds():
    assert format_seconds(42.4) == "42 s"
    assert format_seconds(125.4) == "2 min 05 s"
    assert format_seconds(600) == "10 min 00 s"


def test_iterations_for_budget_and_schedule_fractions():
    assert budget.iterations_for_budget(100, 0.3) == 333
    assert budget.iterations_for_budget(1, 0.3, minimum=10) == 10
    assert budget.iterations_for_budget(100, 0.3, maximum=200) == 200
    cfg = setup_cfg(FAST)  # STEPS (300,) of MAX_ITER 400: the LR drops at 75 %
    scheduled = budget.with_iterations(cfg, 1000)
    assert scheduled.SOLVER.MAX_ITER == 1000
    assert tuple(scheduled.SOLVER.STEPS) == (750,)
    assert scheduled.SOLVER.CHECKPOINT_PERIOD == 250
    assert cfg.SOLVER.MAX_ITER == 400  # the original is left alone


def test_budget_schedule_measures_once_and_a_rerun_keeps_it(tmp_path, monkeypatch):
    calls, clock = [], FakeClock()

    def fake_measure(cfg):  # takes 5 s, finds 0.25 s per iteration
        calls.append(cfg.OUTPUT_DIR)
        clock.now += 5
        return 0.25

    monkeypatch.setattr(budget, "measure_seconds_per_iteration", fake_measure)
    cfg = setup_cfg(FAST, ["OUTPUT_DIR", str(tmp_path)])
    scheduled, record = budget.budget_schedule(cfg, 60.0, minimum=10, clock=clock)
    # 60 s less the measurement and a set-up as long: 50 s of 0.25 s iterations.
    assert record["iterations"] == 200 and scheduled.SOLVER.MAX_ITER == 200
    assert record["measurement_seconds"] == 5
    assert tuple(scheduled.SOLVER.STEPS) == (150,)
    assert json.loads((tmp_path / budget.SCHEDULE_FILE).read_text()) == record
    monkeypatch.setattr(budget, "measure_seconds_per_iteration", lambda cfg: 1.0)
    again, record_again = budget.budget_schedule(cfg, 60.0, minimum=10)
    assert record_again == record and again.SOLVER.MAX_ITER == 200
    assert len(calls) == 1


def test_truncated_backbone_stops_at_res4_and_pools_p5_from_p4():
    cfg = setup_cfg(FAST)
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    assert "res5" not in dict(backbone.bottom_up.named_children())
    features = backbone(torch.zeros(1, 3, 128, 128))
    assert features["p5"].shape[-2:] == (4, 4)
    torch.testing.assert_close(
        features["p5"], torch.nn.functional.max_pool2d(features["p4"], 1, stride=2)
    )


def test_truncated_backbone_with_res5_is_detectron2s():
    torch.manual_seed(0)
    cfg = setup_cfg(TINY, ["MODEL.BACKBONE.NAME", "build_truncated_resnet_fpn_backbone"])
    truncated = build_backbone(cfg)
    ours = {k: v.shape for k, v in truncated.state_dict().items()}
    theirs = {k: v.shape for k, v in build_backbone(setup_cfg(TINY)).state_dict().items()}
    assert ours == theirs
    assert {k: v.stride for k, v in truncated.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64
    }  # fmt: skip


def test_fast_config_builds_a_smaller_model_with_fused_adam():
    from handobj_d2.engine.trainer import HandObjectTrainer

    cfg = setup_cfg(FAST)
    model = build_model(cfg)
    count = sum(p.numel() for p in model.parameters())
    tiny = sum(p.numel() for p in build_model(setup_cfg(TINY)).parameters())
    assert count < 0.3 * tiny  # res5 held 8.4 of the 11.5 M weights
    optimizer = HandObjectTrainer.build_optimizer(cfg, model)
    assert optimizer.defaults["fused"] is True
