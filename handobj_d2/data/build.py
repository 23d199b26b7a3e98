"""Training data loader that mixes labeled and pseudo-labeled datasets in every batch."""

from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.utils import comm


class MixedBatchLoader:
    """Infinite loader whose batches concatenate a labeled batch and a pseudo-labeled batch."""

    def __init__(self, labeled_loader, pseudo_loader):
        self.labeled_loader = labeled_loader
        self.pseudo_loader = pseudo_loader

    def __iter__(self):
        for labeled, pseudo in zip(self.labeled_loader, self.pseudo_loader):
            yield labeled + pseudo


def pseudo_batch_size(cfg):
    """Number of pseudo-labeled samples per (global) batch: SEMI.PSEUDO_RATIO x IMS_PER_BATCH,
    at least one per process and leaving at least one labeled sample per process."""
    world = comm.get_world_size()
    total = cfg.SOLVER.IMS_PER_BATCH
    per_process = max(1, min(total // world - 1, round(cfg.SEMI.PSEUDO_RATIO * total / world)))
    return per_process * world


def build_hand_object_train_loader(cfg, mapper):
    """DATASETS.TRAIN alone, or mixed with SEMI.PSEUDO_DATASETS when any are configured."""
    if not cfg.SEMI.PSEUDO_DATASETS:
        return build_detection_train_loader(cfg, mapper=mapper)
    n_pseudo = pseudo_batch_size(cfg)
    n_labeled = cfg.SOLVER.IMS_PER_BATCH - n_pseudo
    if n_labeled < comm.get_world_size():
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is too small to mix labeled and "
            f"pseudo-labeled samples on {comm.get_world_size()} processes"
        )

    def loader(names, batch_size):
        dicts = get_detection_dataset_dicts(
            names, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
        return build_detection_train_loader(
            dataset=dicts,
            mapper=mapper,
            total_batch_size=batch_size,
            aspect_ratio_grouping=False,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    return MixedBatchLoader(
        loader(cfg.DATASETS.TRAIN, n_labeled), loader(cfg.SEMI.PSEUDO_DATASETS, n_pseudo)
    )
