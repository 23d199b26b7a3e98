from .defaults import HandObjectConfigError, check_datasets, setup_cfg
from .trainer import HandObjectTrainer
