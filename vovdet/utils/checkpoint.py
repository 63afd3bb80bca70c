"""Safe checkpoint loading under torch's ``weights_only=True`` default.

torch >= 2.6 unpickles checkpoints with ``weights_only=True``: only tensors,
containers and allow-listed types may appear. mmengine 0.10.7 checkpoints
carry a few more types in their ``message_hub`` and scheduler states
(``HistoryBuffer`` with numpy arrays and scalars, ``collections.Counter``).
This module allow-lists exactly those types, and replaces mmengine's
local-file loader with one that always loads with ``weights_only=True`` and
turns a refusal into an error that names the file and the offending types.
Nothing is ever unpickled without the check.
"""
import collections
import os.path as osp
import pickle
from typing import List

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside the allow-list."""


def _numpy_safe_globals() -> List:
    """The numpy functions and types that pickled arrays/scalars reference."""
    # numpy 2 moved numpy.core to numpy._core; the pickles name the module
    # of the numpy that wrote them, so allow both spellings when present.
    funcs = []
    for mod_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct'])
        except ImportError:
            continue
        for fn in (mod._reconstruct, mod.scalar):
            funcs.append((fn, f'{mod_name}.{fn.__name__}'))
    dtype_classes = [type(np.dtype(t)) for t in np.sctypeDict.values()]
    return funcs + [np.ndarray, np.dtype] + sorted(
        set(dtype_classes), key=lambda c: c.__name__)


# HistoryBuffer.__getstate__ stores its statistics functions, which pickle
# (protocol 2) writes as ``getattr(HistoryBuffer, 'min')``. A general
# ``getattr`` would let a file reach any attribute of an allowed class (and
# from there arbitrary code), so only these (class, name) pairs resolve.
_ALLOWED_ATTRIBUTES = {
    HistoryBuffer: frozenset(('min', 'max', 'current', 'mean')),
}


def _restricted_getattr(obj, name):
    """``getattr`` limited to :data:`_ALLOWED_ATTRIBUTES`."""
    allowed = _ALLOWED_ATTRIBUTES.get(obj, ())
    if name not in allowed:
        raise pickle.UnpicklingError(
            f'getattr({getattr(obj, "__name__", type(obj).__name__)}, '
            f'{name!r}) is not in the checkpoint allow-list')
    return getattr(obj, name)


SAFE_GLOBALS = [
    HistoryBuffer, collections.Counter,
    (_restricted_getattr, 'builtins.getattr')
] + _numpy_safe_globals()


def register_safe_globals() -> None:
    """Allow-list the non-tensor types that mmengine writes into checkpoints.

    Idempotent. Only classes and functions needed to rebuild mmengine's own
    state (``HistoryBuffer``, ``Counter``, numpy arrays/scalars/dtypes) are
    added; arbitrary classes and callables stay refused.
    """
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def _unsafe_globals(filename: str) -> List[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint, or an old torch
        return []


def safe_load_checkpoint(filename: str, map_location=None) -> dict:
    """Load a local checkpoint with ``weights_only=True`` and clear errors.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Passed to :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The file pickles objects outside the
            allow-list (e.g. arbitrary classes or functions).
        RuntimeError: The file is truncated or not a torch checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"checkpoint '{filename}' does not exist")
    register_safe_globals()
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(filename)
        allowed = {f'{g.__module__}.{g.__qualname__}' if not isinstance(
            g, tuple) else g[1] for g in SAFE_GLOBALS}
        unsafe = [name for name in unsafe if name not in allowed]
        found = ', '.join(unsafe) if unsafe else _first_line(e)
        raise UnsafeCheckpointError(
            f"refusing to load checkpoint '{filename}': it pickles objects "
            f'outside the allow-list ({found}). Checkpoints written by '
            'mmengine/vovdet load as they are; if you trust this file, '
            'load it yourself with torch.load(..., weights_only=False) and '
            're-save its state_dict.') from e
    except (RuntimeError, EOFError, ValueError) as e:
        empty = ' (the file is empty)' if osp.getsize(filename) == 0 else ''
        raise RuntimeError(
            f"checkpoint '{filename}' is corrupt or not a torch checkpoint"
            f'{empty} ({type(e).__name__}: {_first_line(e)}); point to '
            'another checkpoint or train again') from e


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when
    the message is empty (``EOFError()`` from an empty file)."""
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def install_safe_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints through
    :func:`safe_load_checkpoint` (``Runner.load_checkpoint``, ``resume``,
    ``load_from`` and ``mmengine.runner.load_checkpoint`` all go through
    ``CheckpointLoader``'s ``''`` scheme)."""
    register_safe_globals()
    # mmengine has no other hook to change how local files are read; its
    # own local loader calls torch.load without naming weights_only.
    CheckpointLoader.register_scheme(
        prefixes='', loader=safe_load_checkpoint, force=True)
