"""Start a tool's ``main`` on several processes: Detectron2's ``launch`` for GPUs (NCCL), and
its CPU counterpart (gloo), which Detectron2 v0.6 lacks (its workers assert CUDA). The CPU
workers set up the same process groups as Detectron2's (``detectron2.utils.comm``), so the
trainer, evaluators and pseudo-label sharding run unchanged. docs/distributed.md."""

import logging
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm


def add_launch_arguments(parser):
    """``--num-processes``, another name for Detectron2's ``--num-gpus`` (processes per
    machine), which reads better for CPU runs."""
    parser.add_argument(
        "--num-processes",
        dest="num_gpus",
        type=int,
        help="processes per machine (the same as --num-gpus; with MODEL.DEVICE cpu they are "
        "CPU processes talking over gloo)",
    )
    return parser


def free_local_url():
    """tcp://127.0.0.1:PORT with a port free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def launch(
    main_func,
    num_processes,
    device,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` on ``num_processes`` processes per machine, one per GPU when
    ``device`` (MODEL.DEVICE) is a CUDA device, else CPU processes over gloo. ``dist_url``
    "auto" picks a free local port (one machine)."""
    if torch.device(device).type == "cuda":
        return detectron2_launch(
            main_func, num_processes, num_machines, machine_rank, dist_url, args, timeout
        )
    world_size = num_machines * num_processes
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only")
        dist_url = free_local_url()
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes,
        args=(main_func, num_machines, num_processes, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(
    local_rank, main_func, num_machines, num_processes, machine_rank, dist_url, args, timeout
):
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=dist_url,
            world_size=num_machines * num_processes,
            rank=machine_rank * num_processes + local_rank,
            timeout=timeout,
        )
    except Exception:
        logging.getLogger(__name__).error(f"process group URL: {dist_url}")
        raise
    for machine in range(num_machines):
        ranks = list(range(machine * num_processes, (machine + 1) * num_processes))
        group = dist.new_group(ranks)  # every process creates every group
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    # The processes share the machine's cores instead of each taking all of them.
    torch.set_num_threads(max(1, torch.get_num_threads() // num_processes))
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
