"""handobj_d2: semi-supervised 3D hand-object pose estimation (Liu et al., CVPR 2021) on
Detectron2. Importing the package registers its models, datasets and evaluators."""

from . import (
    data,  # registers the built-in datasets
    modeling,  # registers HandObjectRCNN, HandObjectROIHeads
)
from .config import add_handobj_config

__all__ = ["add_handobj_config"]
