"""HandObjectTrainer: Detectron2's DefaultTrainer with the project's optimizer, data and
evaluators."""

import os

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..evaluation import HandPoseEvaluator, ObjectPoseEvaluator
from ..mano import build_hand_layer


class HandObjectTrainer(DefaultTrainer):
    @classmethod
    def build_optimizer(cls, cfg, model):
        """Adam (the released code's choice) or SGD, per ``SOLVER.OPTIMIZER``."""
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "ADAM":
            optimizer = torch.optim.Adam(
                params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
            )
        elif name == "SGD":
            optimizer = torch.optim.SGD(
                params,
                lr=cfg.SOLVER.BASE_LR,
                momentum=cfg.SOLVER.MOMENTUM,
                nesterov=cfg.SOLVER.NESTEROV,
            )
        else:
            raise ValueError(f"SOLVER.OPTIMIZER must be ADAM or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
        return maybe_add_gradient_clipping(cfg, optimizer)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """Evaluators from the dataset's metadata ``evaluator_type``."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
        if evaluator_type == "coco":
            return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
        if evaluator_type == "handobj":
            hand = HandPoseEvaluator(
                dataset_name,
                output_dir=output_folder,
                hand_layer=build_hand_layer(cfg),
                write_pred_json=cfg.TEST.HANDOBJ.WRITE_PRED_JSON,
            )
            return DatasetEvaluators([hand, ObjectPoseEvaluator(dataset_name, output_folder)])
        raise ValueError(f"{dataset_name}: no evaluator for evaluator_type {evaluator_type!r}")
