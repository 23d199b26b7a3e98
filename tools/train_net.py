#!/usr/bin/env python
"""Train or evaluate a handobj_d2 model (Detectron2's train_net conventions).

    python tools/train_net.py --config-file configs/HO3D-v2/handobj_R50_FPN.yaml --num-gpus 8
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file CFG --resume          # continue after a kill

    python tools/train_net.py --config-file CFG --num-processes 2 --dist-url auto \
        MODEL.DEVICE cpu                                          # 2 CPU processes (gloo)

Multi-machine: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT. Batch size and
learning rate on another number of GPUs: docs/distributed.md.
"""

import sys

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, default_setup

import handobj_d2  # noqa: F401  (registers models and datasets)
from handobj_d2.engine import HandObjectConfigError, HandObjectTrainer, check_datasets, setup_cfg
from handobj_d2.engine.launch import add_launch_arguments, launch


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts)
    check_datasets(cfg)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = HandObjectTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return HandObjectTrainer.test(cfg, model)
    trainer = HandObjectTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = add_launch_arguments(default_argument_parser()).parse_args()
    try:  # fail fast, before spawning workers, on a bad config file, key or dataset name
        cfg = setup_cfg(args.config_file, args.opts)
        check_datasets(cfg)
    except HandObjectConfigError as e:
        sys.exit(f"error: {e}")
    launch(
        main,
        args.num_gpus,
        cfg.MODEL.DEVICE,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
