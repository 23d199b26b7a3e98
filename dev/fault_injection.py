#!/usr/bin/env python
"""Fault injection for the long jobs: kill -9 at random moments, rerun, and check that the job
finishes as if nothing had happened (docs/reliability.md has the figures).

    # the long version: N random kills of each job on a tiny synthetic set, JSON on stdout
    python dev/fault_injection.py campaign --kills 5 --output output/faults
    # run a tool with a fault injected (tests/test_fault_injection.py uses this)
    python dev/fault_injection.py inject --kill-in-save 3 -- tools/train_net.py ARGS...
    python dev/fault_injection.py inject --kill-before-commit '*/videos/*.json' 2 -- \\
        tools/generate_pseudo_labels.py ARGS...

``inject`` runs the script in this process after patching one of two places to SIGKILL the
process: ``--kill-in-save N`` inside the N-th ``torch.save`` (half of the serialised bytes
written: a kill while a checkpoint is written); ``--kill-before-commit PATTERN N`` at the N-th
``os.replace`` onto a path matching PATTERN (fnmatch; a kill just before a finished file is
renamed into place by ``write_atomically``).

``campaign`` (minutes on a CPU) makes a small synthetic set, then for each job (training,
pseudo-label generation, the synthetic generator) runs it once uninterrupted as the
reference, and ``--kills`` times killed with SIGKILL at a uniformly random moment of its run
and rerun (``--resume`` for training) until it finishes; it reports, per job, how many runs
finished, whether the files equal the reference byte for byte (pseudo-labels, synthetic set)
or how far the final metrics are from the reference's, next to a second uninterrupted
training with another seed (the run-to-run noise), and the leftover temporary files.
"""

import argparse
import fnmatch
import hashlib
import io
import itertools
import json
import os
import random
import runpy
import shutil
import signal
import subprocess
import sys
import time

from handobj_d2.utils.io import TEMPORARY_PREFIX

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "synthetic", "handobj_tiny.yaml")
JOBS = ("training", "pseudo_labels", "synthetic_generator")


def _kill_self():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_in_save(nth, fraction=0.5):
    """Patch ``torch.save``: its ``nth`` call writes ``fraction`` of the bytes, then SIGKILL."""
    import torch

    original, calls = torch.save, itertools.count(1)

    def save(obj, f, *args, **kwargs):
        if next(calls) != nth:
            return original(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        original(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if isinstance(f, (str, os.PathLike)):
            f = open(f, "wb")
        f.write(data[: int(len(data) * fraction)])
        f.flush()
        _kill_self()

    torch.save = save


def kill_before_commit(pattern, nth):
    """Patch ``os.replace``: SIGKILL at its ``nth`` call onto a path matching ``pattern``."""
    original, calls = os.replace, itertools.count(1)

    def replace(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(os.fspath(dst), pattern) and next(calls) == nth:
            _kill_self()
        return original(src, dst, *args, **kwargs)

    os.replace = replace


def inject(args):
    if args.kill_in_save:
        kill_in_save(args.kill_in_save)
    if args.kill_before_commit:
        pattern, nth = args.kill_before_commit
        kill_before_commit(pattern, int(nth))
    script, *script_args = args.command
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


# --- the campaign -------------------------------------------------------------------------


def _env():
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    return env


def _start(command, log, env):
    with open(log, "a") as console:
        return subprocess.Popen(
            [sys.executable, *command], env=env, cwd=REPO, stdout=console, stderr=subprocess.STDOUT
        )


def _run(command, log, env):
    """Run to the end; returns (seconds, exit status)."""
    start = time.time()
    code = _start(command, log, env).wait()
    return time.time() - start, code


def _kill_and_rerun(command, log, env, duration, rng, rerun=None, inspect=None):
    """Start ``command``, SIGKILL it at a uniform moment of ``duration`` seconds (unless it has
    finished), call ``inspect()`` (a dict of findings) then run ``rerun`` (default: the same
    command) to the end. Returns a dict."""
    delay = rng.uniform(0.05, 0.95) * duration
    process = _start(command, log, env)
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = True
    found = inspect() if inspect else {}
    seconds, code = _run(rerun or command, log, env)
    return {"kill_after_s": round(delay, 2), "killed": killed, **found, "rerun_exit": code,
            "rerun_s": round(seconds, 1)}  # fmt: skip


def _tree(root, skip=()):
    """{relative path: sha256} of the files under ``root``, and the temporary leftovers."""
    files, leftovers = {}, []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if name.startswith(TEMPORARY_PREFIX):
                leftovers.append(relative)
            elif relative not in skip:
                with open(path, "rb") as f:
                    files[relative] = hashlib.sha256(f.read()).hexdigest()
    return files, sorted(leftovers)


def _compare_trees(reference, candidate, skip=()):
    expected, _ = _tree(reference, skip)
    found, leftovers = _tree(candidate, skip)
    differing = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    return {"files": len(expected), "differing": differing, "leftover_temporary": leftovers}


def _final_metrics(output):
    """The last evaluation's hand metrics from metrics.json (EvalHook writes them there)."""
    last = {}
    with open(os.path.join(output, "metrics.json")) as f:
        for line in f:
            entry = json.loads(line)
            last.update({k: v for k, v in entry.items() if k.startswith("hand/")})
    return last


def _checkpoints_load(output):
    """Every .pth in ``output`` loads (a truncated checkpoint raises in torch.load)."""
    import torch

    bad = []
    for name in sorted(os.listdir(output)):
        if name.endswith(".pth"):
            try:
                torch.load(os.path.join(output, name), map_location="cpu", weights_only=False)
            except Exception as error:  # noqa: BLE001 (any failure is a corrupt file)
                bad.append(f"{name}: {error}")
    return bad


def campaign_training(args, work, env, rng):
    train = ["tools/train_net.py", "--config-file", CONFIG]
    opts = ["SOLVER.MAX_ITER", str(args.iters), "SOLVER.CHECKPOINT_PERIOD",
            str(max(1, args.iters // 4)), "SOLVER.STEPS", f"({int(0.8 * args.iters)},)",
            "SOLVER.IMS_PER_BATCH", "2", "INPUT.HANDOBJ.CROP_SIZE", "64",
            "TEST.EVAL_PERIOD", "0"]  # fmt: skip

    def command(out, seed, *extra):
        return [*train, *extra, "OUTPUT_DIR", out, "SEED", str(seed), *opts]

    result = {"iterations": args.iters, "checkpoint_period": max(1, args.iters // 4)}
    runs = {}
    for name, seed in (("reference", 0), ("other_seed", 1)):
        out = os.path.join(work, "train", name)
        seconds, code = _run(command(out, seed), os.path.join(work, f"train_{name}.log"), env)
        if code != 0:
            raise RuntimeError(f"training {name} failed; see {work}/train_{name}.log")
        runs[name] = _final_metrics(out)
        result[f"{name}_s"] = round(seconds, 1)
    duration = result["reference_s"]
    kills = []
    for index in range(args.kills):
        out = os.path.join(work, "train", f"killed_{index}")
        log = os.path.join(work, f"train_killed_{index}.log")

        def at_kill(out=out):
            tag = os.path.join(out, "last_checkpoint")
            named = open(tag).read() if os.path.isfile(tag) else None
            return {"last_checkpoint_at_kill": named,
                    "corrupt_checkpoints_at_kill": _checkpoints_load(out) if named else []}  # fmt: skip

        entry = _kill_and_rerun(command(out, 0), log, env, duration, rng,
                                rerun=command(out, 0, "--resume"), inspect=at_kill)  # fmt: skip
        with open(log) as f:
            console = f.read()
        starts = [line.split("iteration")[-1].strip() for line in console.splitlines()
                  if "Starting training from iteration" in line]  # fmt: skip
        entry["resumed_from_iteration"] = int(starts[-1]) if len(starts) > 1 else None
        entry["corrupt_checkpoints"] = _checkpoints_load(out)
        entry["finished"] = entry["rerun_exit"] == 0 and os.path.isfile(
            os.path.join(out, "model_final.pth")
        )
        metrics = _final_metrics(out) if entry["finished"] else {}
        entry["metric_difference"] = {
            k: round(metrics[k] - runs["reference"][k], 4)
            for k in metrics
            if k in runs["reference"]
        }
        kills.append(entry)
    # A kill inside the very last checkpoint write (model_final.pth).
    out = os.path.join(work, "train", "killed_in_final_save")
    log = os.path.join(work, "train_killed_in_final_save.log")
    saves = args.iters // max(1, args.iters // 4) + 1
    _run(["dev/fault_injection.py", "inject", "--kill-in-save", str(saves), "--",
          *command(out, 0)], log, env)  # fmt: skip
    final_absent = not os.path.exists(os.path.join(out, "model_final.pth"))
    _, code = _run(command(out, 0, "--resume"), log, env)
    result["killed_in_final_save"] = {
        "model_final_absent_after_kill": final_absent,
        "rerun_exit": code,
        "metrics_equal_reference": code == 0 and _final_metrics(out) == runs["reference"],
    }
    result["kills"] = kills
    result["reference_metrics"] = runs["reference"]
    result["seed_noise"] = {
        k: round(runs["other_seed"][k] - runs["reference"][k], 4) for k in runs["reference"]
    }
    result["finished"] = sum(k["finished"] for k in kills)
    return result


def _rerun_campaign(name, command, work, env, rng, kills, skip=()):
    """The reference run of ``command(output)`` and ``kills`` killed-and-rerun runs, each
    compared file by file with the reference (``skip``: files a run makes its own)."""
    reference = os.path.join(work, name, "reference")
    seconds, code = _run(command(reference), os.path.join(work, f"{name}_reference.log"), env)
    if code != 0:
        raise RuntimeError(f"{name}: the reference run failed; see {work}/{name}_reference.log")
    entries = []
    for index in range(kills):
        out = os.path.join(work, name, f"killed_{index}")
        log = os.path.join(work, f"{name}_killed_{index}.log")
        entry = _kill_and_rerun(command(out), log, env, seconds, rng)
        entry.update(_compare_trees(reference, out, skip))
        entries.append(entry)
    identical = sum(not e["differing"] and e["rerun_exit"] == 0 for e in entries)
    return {"reference_s": round(seconds, 1), "kills": entries, "identical": identical}


def campaign_pseudo_labels(args, work, env, rng, dataset_root):
    teacher = args.teacher or os.path.join(work, "train", "reference", "model_final.pth")
    videos = os.path.join(dataset_root, "video_frames")

    def command(out):
        return ["tools/generate_pseudo_labels.py", "--config-file", CONFIG, "--videos", videos,
                "--output", out, "MODEL.WEIGHTS", teacher, "SEMI.BATCH_SIZE", "2",
                "INPUT.HANDOBJ.CROP_SIZE", "64"]  # fmt: skip

    # log.txt (the run's log) and config.yaml (it names the output folder) are the run's own.
    result = _rerun_campaign("pseudo", command, work, env, rng, args.kills,
                             skip=("log.txt", "config.yaml"))  # fmt: skip
    for index, entry in enumerate(result["kills"]):
        with open(os.path.join(work, "pseudo", f"killed_{index}", "pseudo_labels.json")) as f:
            ids = [record["image_id"] for record in json.load(f)]
        entry["pseudo_labels"] = len(ids)
        entry["duplicate_frames"] = len(ids) - len(set(ids))
    return result


def campaign_synthetic(args, work, env, rng):
    def command(out):
        return ["tools/make_synthetic_dataset.py", "--output", out, "--train", "24", "--eval", "8",
                "--videos", "2", "--frames-per-video", "12", "--image-size", "160", "120"]  # fmt: skip

    return _rerun_campaign("synthetic", command, work, env, rng, args.kills)


def campaign(args):
    sys.path.insert(0, REPO)
    from handobj_d2.data.synthetic import generate_dataset

    start = time.time()
    work = os.path.abspath(args.output)
    if os.path.exists(work):
        shutil.rmtree(work)
    dataset_root = os.path.join(work, "datasets", "synthetic")
    generate_dataset(dataset_root, train=32, evaluation=8, videos=3, frames_per_video=8,
                     image_size=(160, 120), seed=0, progress=False)  # fmt: skip
    env = dict(_env(), HANDOBJ_DATASETS=os.path.dirname(dataset_root))
    rng = random.Random(args.seed)
    report = {"kills_per_job": args.kills, "seed": args.seed}
    if "training" in args.jobs:
        report["training"] = campaign_training(args, work, env, rng)
    if "pseudo_labels" in args.jobs:
        report["pseudo_labels"] = campaign_pseudo_labels(args, work, env, rng, dataset_root)
    if "synthetic_generator" in args.jobs:
        report["synthetic_generator"] = campaign_synthetic(args, work, env, rng)
    report["total_s"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=2))
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    run = commands.add_parser("campaign", help="the long version: random kills of every job")
    run.add_argument("--kills", type=int, default=5, help="killed runs per job")
    run.add_argument("--iters", type=int, default=20, help="training iterations per run")
    run.add_argument("--seed", type=int, default=0, help="of the kill moments")
    run.add_argument("--output", default="output/fault_injection", help="work folder (replaced)")
    run.add_argument("--jobs", nargs="+", default=JOBS, choices=JOBS)
    run.add_argument("--teacher", default="",
                     help="pseudo-labels' teacher (default: the training job's reference)")  # fmt: skip
    one = commands.add_parser("inject", help="run a script with a fault injected")
    one.add_argument("--kill-in-save", type=int, metavar="N")
    one.add_argument("--kill-before-commit", nargs=2, metavar=("PATTERN", "N"))
    one.add_argument("command", nargs="+", help="-- SCRIPT ARGS...")
    args = parser.parse_args(argv)
    if args.mode == "campaign" and args.kills < 1:
        parser.error("--kills must be >= 1")
    if args.mode == "campaign" and "training" not in args.jobs and "pseudo_labels" in args.jobs:
        if not args.teacher:
            parser.error("--jobs pseudo_labels without training needs --teacher")
    return args


def main(argv=None):
    args = parse_args(argv)
    return campaign(args) if args.mode == "campaign" else inject(args)


if __name__ == "__main__":
    sys.exit(main())
