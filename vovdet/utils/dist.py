"""CPU-friendly distributed launch for mmengine's DDP."""
import atexit
import os
import sys
from typing import NoReturn

import torch
import torch.distributed as dist
from mmengine.config import Config


def adapt_dist_cfg_for_device(cfg: Config) -> None:
    """Let a ``--launcher pytorch`` run work without CUDA.

    mmengine defaults to the NCCL backend and passes ``device_ids=[rank]`` to
    ``DistributedDataParallel``; both need GPUs. Without CUDA we use the gloo
    backend and wrap the CPU model with ``device_ids=None``. With CUDA the
    config is left as it is.

    Args:
        cfg (Config): The config, modified in place.
    """
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def init_cpu_distributed(launcher: str) -> None:
    """Initialise a gloo process group for a CPU ``pytorch`` launch.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` before creating
    the process group, which fails without CUDA; the runner skips its own
    initialisation when a group already exists. With CUDA, or for other
    launchers, this does nothing and mmengine initialises as usual.

    Args:
        launcher (str): The ``--launcher`` argument.
    """
    if (launcher != 'pytorch' or torch.cuda.is_available()
            or dist.is_initialized()):
        return
    dist.init_process_group(
        backend='gloo',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']))


def launch_rank() -> int:
    """This process's global rank as its launcher set it (0 when not
    distributed), readable before the process group exists: torchrun's
    ``RANK``, Slurm's ``SLURM_PROCID``, Open MPI's ``OMPI_COMM_WORLD_RANK``.
    """
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 0


def shutdown_distributed() -> bool:
    """Destroy the default process group, if there is one.

    mmengine never destroys it. The entry points call this on the way out,
    on success and on error, before :func:`end_distributed_process`.

    Returns:
        bool: Whether a process group existed (the run was distributed).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


def end_distributed_process(code: int) -> NoReturn:
    """End a finished distributed process without interpreter finalisation.

    Destroying the group is not enough to release it. After a run with the
    model wrapped in ``DistributedDataParallel``, each rank still has the
    gloo threads (``gloo_tcp_loop``, ``pt_gloo_runloop``) once
    ``destroy_process_group`` has returned (torch 2.13: mmengine's
    runner, two CPU processes). Their teardown during interpreter
    finalisation sometimes aborted a run that had finished and saved its
    checkpoints: ``terminate called without an active exception``, exit
    status -6. On our 2-core machine that happened in 1 of 5 two-process
    runs without the destroy, and still in one of two full test-suite runs
    with it.

    This runs the ``atexit`` handlers (logging's flush and close among them)
    and flushes the standard streams while the interpreter is whole, then
    leaves with ``os._exit``, which skips the teardown that aborts.

    Args:
        code (int): The process's exit status.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(code)
