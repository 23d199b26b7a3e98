"""Training data loader that mixes labeled and pseudo-labeled datasets in every batch."""

import os

import torch.utils.data
from detectron2.data import (
    DatasetCatalog,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.utils import comm

from .datasets.pseudo_labels import register_pseudo_label_dataset


class MappedRecords(torch.utils.data.Dataset):
    """``records`` mapped by ``mapper``; where the mapper skips a record (returns None: a bad
    sample under DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY "skip") the next records in order stand in.
    Detectron2's MapDataset draws a random stand-in instead, with ``random.sample`` on a set,
    which Python >= 3.11 rejects (TypeError)."""

    def __init__(self, records, mapper):
        self.records = records
        self.mapper = mapper

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        for offset in range(len(self.records)):
            data = self.mapper(self.records[(index + offset) % len(self.records)])
            if data is not None:
                return data
        raise RuntimeError("every training record was skipped as bad")


def _train_loader(dicts, mapper, batch_size, num_workers, aspect_ratio_grouping):
    return build_detection_train_loader(
        dataset=MappedRecords(dicts, mapper),
        mapper=None,
        total_batch_size=batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
    )


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


def pseudo_label_datasets(cfg):
    """Names of the pseudo-labeled training datasets: SEMI.PSEUDO_DATASETS, then one dataset per
    file of SEMI.PSEUDO_LABEL_FILES, registered here (once) as "pseudo_labels:<absolute path>"."""
    names = list(cfg.SEMI.PSEUDO_DATASETS)
    for path in cfg.SEMI.PSEUDO_LABEL_FILES:
        name = f"pseudo_labels:{os.path.abspath(path)}"
        if name not in DatasetCatalog.list():
            register_pseudo_label_dataset(name, path)
        names.append(name)
    return names


def build_hand_object_train_loader(cfg, mapper):
    """DATASETS.TRAIN alone, or mixed with the pseudo-labeled datasets when any are configured
    (``pseudo_label_datasets``)."""
    pseudo_names = pseudo_label_datasets(cfg)

    def dicts(names):
        return get_detection_dataset_dicts(
            names, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )

    if not pseudo_names:
        return _train_loader(dicts(cfg.DATASETS.TRAIN), mapper, cfg.SOLVER.IMS_PER_BATCH,
                             cfg.DATALOADER.NUM_WORKERS, cfg.DATALOADER.ASPECT_RATIO_GROUPING)  # fmt: skip
    n_pseudo = pseudo_batch_size(cfg)
    n_labeled = cfg.SOLVER.IMS_PER_BATCH - n_pseudo
    if n_labeled < comm.get_world_size():
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is too small to mix labeled and "
            f"pseudo-labeled samples on {comm.get_world_size()} processes"
        )

    def loader(names, batch_size):
        return _train_loader(dicts(names), mapper, batch_size, cfg.DATALOADER.NUM_WORKERS, False)

    return MixedBatchLoader(loader(cfg.DATASETS.TRAIN, n_labeled), loader(pseudo_names, n_pseudo))
