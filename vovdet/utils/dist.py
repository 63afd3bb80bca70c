"""CPU-friendly distributed launch for mmengine's DDP."""
import os

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


def shutdown_distributed() -> None:
    """Destroy the default process group if this process created one.

    mmengine never destroys it. A gloo group left alive when the interpreter
    exits still owns worker threads, and their teardown during finalisation
    can abort the process (``terminate called without an active
    exception``, exit status -6) after training has already finished. The
    entry points call this on the way out, on success and on error.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
