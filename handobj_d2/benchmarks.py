"""Benchmark tasks behind ``tools/benchmark.py``. Each task is a function registered in
``TASKS`` that takes the parsed arguments and returns a JSON-serialisable dict; ``main`` prints
it. Tasks add their own options in ``add_arguments``."""
import argparse
import json

TASKS = {}


def register_task(name):
    def decorator(fn):
        TASKS[name] = fn
        return fn

    return decorator


def add_arguments(parser):
    parser.add_argument("--config-file", default="configs/synthetic/handobj_tiny.yaml")
    parser.add_argument("--image-size", type=int, default=512, help="square input side, pixels")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    parser.add_argument("--num-samples", type=int, default=1000, help="scorer: samples to score")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = {"task": args.task, **TASKS[args.task](args)}
    print(json.dumps(result, indent=2))
    return 0


# The HO3D challenge's own script (eval.py), timed on the project's 2-core machine.
CHALLENGE_SECONDS_PER_SAMPLE = 0.22
HO3D_V2_EVALUATION_SIZE = 11524


@register_task("scorer")
def scorer_benchmark(args):
    """Offline HO3D scorer (``tools/evaluate_ho3d.py``) end to end, reading and writing files,
    on ``--num-samples`` random hands written in the challenge's format. Reports the median
    over ``--repeats`` runs, the projection to HO3D v2's 11,524 evaluation images and the
    speed-up over the challenge's script."""
    import os
    import tempfile
    import time

    import numpy as np

    from .evaluation.ho3d_scorer import evaluate

    rng = np.random.default_rng(0)
    num = args.num_samples
    joints = rng.normal(0, 0.04, (num, 21, 3)) + np.array([0.0, 0.0, -0.5])
    bones = rng.integers(0, 21, (778, 2))
    weights = rng.uniform(0, 1, (778, 1))
    vertices = weights * joints[:, bones[:, 0]] + (1 - weights) * joints[:, bones[:, 1]]
    vertices += rng.normal(0, 0.006, vertices.shape)
    files = {
        "evaluation_xyz.json": joints.tolist(),
        "evaluation_verts.json": vertices.tolist(),
        "pred.json": [
            (joints + rng.normal(0, 0.01, joints.shape)).tolist(),
            (vertices + rng.normal(0, 0.01, vertices.shape)).tolist(),
        ],
    }
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            with open(os.path.join(folder, name), "w") as f:
                json.dump(data, f)
        del files
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            evaluate(folder, os.path.join(folder, "out"))
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    per_sample = seconds / num
    return {
        "num_samples": num,
        "repeats": len(times),
        "seconds_total": round(seconds, 3),
        "seconds_per_sample": per_sample,
        "projected_seconds_ho3d_v2": round(per_sample * HO3D_V2_EVALUATION_SIZE, 1),
        "challenge_seconds_per_sample": CHALLENGE_SECONDS_PER_SAMPLE,
        "speedup_vs_challenge": round(CHALLENGE_SECONDS_PER_SAMPLE / per_sample, 1),
    }
