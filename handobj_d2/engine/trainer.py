"""HandObjectTrainer: Detectron2's DefaultTrainer with the project's optimizer, data,
evaluators and DistributedDataParallel wrapping (CPU processes too, see docs/distributed.md)."""

import io
import logging
import os
import weakref

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..data import HandObjectDatasetMapper, build_hand_object_train_loader
from ..evaluation import HandPoseEvaluator, ObjectPoseEvaluator
from ..mano import build_hand_layer
from .defaults import apply_epoch_schedule
from ..utils.io import remove_temporary_files, write_atomically


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


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose files appear whole or not at all.

    Detectron2 writes ``model_XXXXXXX.pth`` in place and then rewrites ``last_checkpoint`` in
    place: a kill during the first leaves a truncated .pth on disk (read by whoever loads it
    directly, e.g. a truncated ``model_final.pth`` as MODEL.WEIGHTS), and a kill during the
    second an empty ``last_checkpoint``, on which ``--resume`` fails. Here both go through
    ``utils.io.write_atomically`` (a temporary file in ``save_dir``, fsync, renamed over the
    target), so after a kill at any moment ``last_checkpoint`` names a complete checkpoint.
    The checkpoint is serialised in memory first, which needs its size in free RAM.
    """

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        buffer = io.BytesIO()
        torch.save(data, buffer)
        write_atomically(path, buffer.getbuffer())
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        write_atomically(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)


def create_ddp_model(cfg, model):
    """``model`` wrapped in DistributedDataParallel when there is more than one process.

    CUDA models are bound to the process's local GPU, CPU models (MODEL.DEVICE "cpu", gloo) to
    none. With MODEL.HANDOBJ.DETECTOR_ON False the RPN, the box head and the FPN outputs only
    the detector reads (p3-p6) get no gradient, which DDP rejects unless told to look for unused
    parameters (a graph traversal per iteration, so only then)."""
    if comm.get_world_size() == 1:
        return model
    cuda = torch.device(cfg.MODEL.DEVICE).type == "cuda"
    return DistributedDataParallel(
        model,
        device_ids=[comm.get_local_rank()] if cuda else None,
        broadcast_buffers=False,
        find_unused_parameters=not cfg.MODEL.HANDOBJ.DETECTOR_ON,
    )


class HandObjectTrainer(DefaultTrainer):
    def __init__(self, cfg):
        """DefaultTrainer's, with the model wrapped by :func:`create_ddp_model` and a schedule in
        epochs (SOLVER.HANDOBJ.EPOCHS) turned into SOLVER.STEPS / MAX_ITER."""
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        if not logging.getLogger("handobj_d2").isEnabledFor(logging.INFO):
            # The package's own messages (the epoch schedule, the mapper) beside Detectron2's.
            setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="handobj_d2")
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        cfg = apply_epoch_schedule(cfg)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(cfg, model)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        """DefaultTrainer's, starting from ``initial_weights(cfg)`` instead of MODEL.WEIGHTS.

        A run killed between its last periodic checkpoint and ``model_final.pth`` (MAX_ITER a
        multiple of CHECKPOINT_PERIOD) resumes with no iteration left, where Detectron2 never
        writes ``model_final.pth``: it is written here, from that last checkpoint."""
        if resume and comm.is_main_process() and os.path.isdir(self.cfg.OUTPUT_DIR):
            remove_temporary_files(self.cfg.OUTPUT_DIR, recursive=False)  # checkpoints' halves
        self.checkpointer.resume_or_load(initial_weights(self.cfg), resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            final = os.path.join(self.cfg.OUTPUT_DIR, "model_final.pth")
            if self.start_iter >= self.max_iter and not os.path.isfile(final):
                self.checkpointer.save("model_final", iteration=self.iter)

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
