from .defaults import HandObjectConfigError, check_datasets, setup_cfg
from .predictor import HandObjectPredictor
from .trainer import HandObjectTrainer
