"""Checkpoints anyone can load, and safe loading of older ones.

torch >= 2.6 unpickles checkpoints with ``weights_only=True``: only tensors,
containers and allow-listed types may appear. mmengine 0.10.7 checkpoints
carry a few more types in their ``message_hub`` and scheduler states
(``HistoryBuffer`` with numpy arrays and scalars, ``collections.Counter``),
so a stock ``torch.load`` refuses them.

- Writing: :func:`to_plain` turns those objects into plain containers of
  tensors and numbers, each marked with the type it came from, so a
  checkpoint written by vovdet's checkpoint hook
  (:class:`vovdet.engine.PortableCheckpointHook`) loads with
  ``torch.load(path, weights_only=True)`` in any process, vovdet imported
  or not.
- Reading: :func:`safe_load_checkpoint` always loads with
  ``weights_only=True``, allow-listing exactly mmengine's own types (so
  older checkpoints still load), turns a refusal into an error that names
  the file and the offending types, and rebuilds the marked objects
  (:func:`from_plain`) so ``--resume`` gets mmengine's objects back. It
  replaces mmengine's local-file loader. Nothing is ever unpickled without
  the check.
"""
import collections
import os.path as osp
import pickle
from typing import Any, List

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside the allow-list."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated, empty or not a torch checkpoint."""


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
        CorruptCheckpointError: The file is truncated, empty or not a torch
            checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"checkpoint '{filename}' does not exist")
    register_safe_globals()
    try:
        checkpoint = torch.load(
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
        raise CorruptCheckpointError(
            f"checkpoint '{filename}' is corrupt or not a torch checkpoint"
            f'{empty} ({type(e).__name__}: {_first_line(e)}); point to '
            'another checkpoint or train again') from e
    return from_plain(checkpoint)


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when
    the message is empty (``EOFError()`` from an empty file)."""
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


# The key that marks a plain dict standing for an object (see to_plain).
PLAIN_TYPE_KEY = '__vovdet_type__'


def to_plain(obj: Any, where: str = 'checkpoint') -> Any:
    """``obj`` with every non-plain object replaced by a plain stand-in.

    Tensors, ``str``, ``int``, ``float``, ``bool``, ``None``, ``dict``,
    ``list`` and ``tuple`` stay (subclasses such as ``ConfigDict`` become
    the plain container; ``OrderedDict``, which torch reads, stays).
    mmengine's ``HistoryBuffer``, ``collections.Counter``, numpy arrays and
    numpy scalars become dicts marked with :data:`PLAIN_TYPE_KEY` that
    :func:`from_plain` turns back. Containers are copied, never changed in
    place.

    Args:
        obj: A checkpoint entry (``meta``, ``message_hub``, ``optimizer``,
            ``param_schedulers`` ...).
        where (str): Its name, for the error message.

    Raises:
        TypeError: An object of another type; the message names where it
            is, since ``torch.load(weights_only=True)`` could not read it.
    """
    if isinstance(obj, np.generic):  # before float: np.float64 is a float
        return {PLAIN_TYPE_KEY: 'numpy.generic', 'dtype': str(obj.dtype),
                'value': obj.item()}
    if obj is None or isinstance(
            obj, (str, int, float, bool, torch.Tensor, torch.dtype,
                  torch.device, torch.Size)):
        return obj
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {PLAIN_TYPE_KEY: 'mmengine.HistoryBuffer',
                'log_history': to_plain(log, where),
                'count_history': to_plain(count, where),
                'max_length': obj.max_length}
    if isinstance(obj, collections.Counter):
        return {PLAIN_TYPE_KEY: 'collections.Counter',
                'items': to_plain(dict(obj), where)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in 'biuf':
            data = torch.from_numpy(np.ascontiguousarray(obj))
        else:
            data = obj.tolist()
        return {PLAIN_TYPE_KEY: 'numpy.ndarray', 'dtype': str(obj.dtype),
                'data': data}
    if isinstance(obj, dict):  # ConfigDict and other subclasses: a dict
        container = (collections.OrderedDict if isinstance(
            obj, collections.OrderedDict) else dict)
        return container(
            (key, to_plain(value, f'{where}[{key!r}]'))
            for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        container = list if isinstance(obj, list) else tuple
        return container(
            to_plain(value, f'{where}[{i}]') for i, value in enumerate(obj))
    raise TypeError(
        f'{where} is a {type(obj).__module__}.{type(obj).__qualname__}, '
        'which torch.load(weights_only=True) cannot read: store it as '
        'tensors, numbers, strings, lists or dicts')


def _from_marked(obj: dict) -> Any:
    """The object a dict marked by :func:`to_plain` stands for."""
    kind = obj[PLAIN_TYPE_KEY]
    if kind == 'numpy.generic':
        return np.dtype(obj['dtype']).type(obj['value'])
    if kind == 'numpy.ndarray':
        data = obj['data']
        if isinstance(data, torch.Tensor):
            data = data.numpy()
        return np.asarray(data, dtype=obj['dtype'])
    if kind == 'collections.Counter':
        return collections.Counter(from_plain(obj['items']))
    if kind == 'mmengine.HistoryBuffer':
        return HistoryBuffer(
            from_plain(obj['log_history']),
            from_plain(obj['count_history']), obj['max_length'])
    raise pickle.UnpicklingError(
        f'unknown {PLAIN_TYPE_KEY} {kind!r} in the checkpoint; it was '
        'written by a newer vovdet')


def from_plain(obj: Any) -> Any:
    """Undo :func:`to_plain`: marked dicts become their objects again.

    Containers holding nothing marked are returned as they are (so a model
    ``state_dict`` keeps its ``_metadata``); anything else is rebuilt with
    the same container types.
    """
    if isinstance(obj, dict):
        if PLAIN_TYPE_KEY in obj:
            return _from_marked(obj)
        items = [(key, from_plain(value)) for key, value in obj.items()]
        if all(new is obj[key] for key, new in items):
            return obj
        return type(obj)(items)
    if type(obj) in (list, tuple):
        items = [from_plain(value) for value in obj]
        if all(new is old for new, old in zip(items, obj)):
            return obj
        return type(obj)(items)
    return obj


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
