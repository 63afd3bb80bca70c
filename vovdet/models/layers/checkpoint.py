"""Gradient checkpointing that leaves BatchNorm running statistics alone.

``torch.utils.checkpoint`` runs the checkpointed function a second time in
the backward pass. A BatchNorm in training mode inside it then updates its
``running_mean``/``running_var``/``num_batches_tracked`` twice per step, so
``with_cp=True`` would train different statistics than ``with_cp=False``
(two momentum updates, the second with the same batch). Every backbone and
layer with ``with_cp`` goes through :func:`checkpoint_keep_running_stats`,
which restores the statistics after the recomputation.
"""
import contextlib
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from torch.nn.modules.batchnorm import _BatchNorm


@contextlib.contextmanager
def keep_running_stats(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Undo every running-statistics update made inside the ``with`` block.

    Args:
        modules (Iterable[nn.Module]): Modules whose BatchNorm layers (at any
            depth) keep their running mean, variance and batch count.
            Norms without running statistics (GroupNorm, BN with
            ``track_running_stats=False``) are left out; they have nothing
            to restore.
    """
    norms = {}
    for module in modules:
        for m in module.modules():
            if isinstance(m, _BatchNorm) and m.running_mean is not None:
                norms[id(m)] = m
    saved = [(buffer, buffer.clone()) for m in norms.values()
             for buffer in (m.running_mean, m.running_var,
                            m.num_batches_tracked)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def checkpoint_keep_running_stats(function: Callable[..., Any],
                                  *args: Any,
                                  modules: Iterable[nn.Module]) -> Any:
    """``torch.utils.checkpoint.checkpoint`` without double BN updates.

    The forward pass runs normally (BatchNorm statistics are updated once);
    the recomputation in backward runs inside :func:`keep_running_stats`.
    Uses the non-reentrant implementation, which preserves the RNG state
    (drop-path, dropout) between the two runs.

    Args:
        function (Callable): The checkpointed function.
        *args: Its arguments.
        modules (Iterable[nn.Module]): The modules ``function`` runs, whose
            BatchNorm statistics must not change during recomputation.

    Returns:
        The output of ``function(*args)``.
    """
    modules = tuple(modules)
    return cp.checkpoint(
        function,
        *args,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(),
                            keep_running_stats(modules)))
