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
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = {"task": args.task, **TASKS[args.task](args)}
    print(json.dumps(result, indent=2))
    return 0
