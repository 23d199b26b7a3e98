"""Statistics for comparing models over seeds and test frames: mean and sample standard deviation,
paired per-frame differences (mean and standard error), their pooling over groups of frames,
and Spearman's rank correlation. Plain numbers in, plain dicts and floats out.
"""

import numpy as np
from scipy.stats import spearmanr

__all__ = ["mean_std", "paired_difference", "pooled_difference", "rank_correlation"]


def mean_std(values):
    """{"mean", "std", "n"} of ``values``: "std" is the sample standard deviation (ddof 1), 0 for
    a single value."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": len(values)}


def paired_difference(values, reference):
    """``values`` minus ``reference`` element by element (the same frames, two models):
    {"mean", "se", "n"} with "se" the standard error of the mean difference (NaN for one
    pair)."""
    diff = np.subtract(values, reference, dtype=float)
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return {"mean": float(diff.mean()), "se": float(se), "n": len(diff)}


def pooled_difference(groups):
    """One paired difference over the frames of all ``groups`` (``paired_difference`` results,
    e.g. one per seed): the mean and standard error of all their differences together."""
    n = np.array([g["n"] for g in groups], dtype=float)
    means = np.array([g["mean"] for g in groups])
    stds = np.array([g["se"] for g in groups]) * np.sqrt(n)
    mean = float((n * means).sum() / n.sum())
    squares = ((n - 1) * stds**2).sum() + (n * (means - mean) ** 2).sum()
    return {
        "mean": mean,
        "se": float(np.sqrt(squares / (n.sum() - 1) / n.sum())),
        "n": int(n.sum()),
    }


def rank_correlation(scores, errors, min_count=3):
    """Spearman's rank correlation of ``scores`` with ``errors`` (equal lengths) over the pairs
    whose score is not NaN (a score that could not be computed); None with fewer than
    ``min_count`` such pairs."""
    scores, errors = np.asarray(scores, dtype=float), np.asarray(errors, dtype=float)
    scored = ~np.isnan(scores)
    if scored.sum() < min_count:
        return None
    return float(spearmanr(scores[scored], errors[scored]).statistic)
