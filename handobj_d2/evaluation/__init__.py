"""Evaluation: pose metrics, the offline FreiHAND and HO3D challenge scorers and Detectron2
evaluators."""

from .freihand_scorer import evaluate as evaluate_freihand
from .hand_evaluator import HandPoseEvaluator
from .ho3d_scorer import evaluate as evaluate_ho3d
from .object_evaluator import ObjectPoseEvaluator

__all__ = ["HandPoseEvaluator", "ObjectPoseEvaluator", "evaluate_freihand", "evaluate_ho3d"]
