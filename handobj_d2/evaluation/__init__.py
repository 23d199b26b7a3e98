"""Evaluation: pose metrics, the offline HO3D challenge scorer and Detectron2 evaluators."""

from .hand_evaluator import HandPoseEvaluator
from .ho3d_scorer import evaluate as evaluate_ho3d
from .object_evaluator import ObjectPoseEvaluator

__all__ = ["HandPoseEvaluator", "ObjectPoseEvaluator", "evaluate_ho3d"]
