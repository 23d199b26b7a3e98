"""HandObjectTrainer: Detectron2's DefaultTrainer with the project's optimizer, data and
evaluators."""

import os

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..data import HandObjectDatasetMapper, build_hand_object_train_loader
from ..evaluation import HandPoseEvaluator, ObjectPoseEvaluator
from ..mano import build_hand_layer


def initial_weights(cfg):
    """The checkpoint a training run starts from: MODEL.WEIGHTS, except for a student (trained
    with pseudo-labels, SEMI.PSEUDO_DATASETS or SEMI.PSEUDO_LABEL_FILES set) with
    SEMI.STUDENT_INIT "scratch", which starts from random weights; "teacher" needs MODEL.WEIGHTS
    (the teacher's checkpoint)."""
    if not (cfg.SEMI.PSEUDO_DATASETS or cfg.SEMI.PSEUDO_LABEL_FILES):
        return cfg.MODEL.WEIGHTS
    if cfg.SEMI.STUDENT_INIT == "scratch":
        return ""
    if cfg.SEMI.STUDENT_INIT != "teacher":
        raise ValueError(
            f"SEMI.STUDENT_INIT must be 'teacher' or 'scratch', got {cfg.SEMI.STUDENT_INIT!r}"
        )
    if not cfg.MODEL.WEIGHTS:
        raise ValueError(
            "SEMI.STUDENT_INIT is 'teacher' but MODEL.WEIGHTS is empty: set MODEL.WEIGHTS to the "
            "teacher's checkpoint, or SEMI.STUDENT_INIT to 'scratch'"
        )
    return cfg.MODEL.WEIGHTS


class HandObjectTrainer(DefaultTrainer):
    def resume_or_load(self, resume=True):
        """DefaultTrainer's, starting from ``initial_weights(cfg)`` instead of MODEL.WEIGHTS."""
        self.checkpointer.resume_or_load(initial_weights(self.cfg), resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Adam (the released code's choice) or SGD, per ``SOLVER.OPTIMIZER``; one fused
        kernel for all parameters with ``SOLVER.FUSED``."""
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
                params,
                lr=cfg.SOLVER.BASE_LR,
                weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                fused=cfg.SOLVER.FUSED or None,
            )
        elif name == "SGD":
            optimizer = torch.optim.SGD(
                params,
                lr=cfg.SOLVER.BASE_LR,
                momentum=cfg.SOLVER.MOMENTUM,
                nesterov=cfg.SOLVER.NESTEROV,
                fused=cfg.SOLVER.FUSED or None,
            )
        else:
            raise ValueError(f"SOLVER.OPTIMIZER must be ADAM or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
        return maybe_add_gradient_clipping(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        """Labeled (and pseudo-labeled) batches through the training HandObjectDatasetMapper."""
        return build_hand_object_train_loader(cfg, HandObjectDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Deterministic crops of ``dataset_name`` (HandObjectDatasetMapper, test mode)."""
        return build_detection_test_loader(
            cfg, dataset_name, mapper=HandObjectDatasetMapper(cfg, False)
        )

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
