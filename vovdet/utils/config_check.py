"""Refuse a config whose top-level ``data_root``, ``metainfo`` or
``num_classes`` does not reach the places it is meant to set.

mmengine evaluates every config file on its own: in a base config,
``train_dataloader = dict(dataset=dict(data_root=data_root))`` stores the
value ``data_root`` had in that file. A child that only writes
``data_root = 'data/mine/'`` changes the top-level key and nothing else, so
training reads the base's folder (or trains the base's number of classes)
and exits 0. ``tools/train.py`` and ``tools/test.py`` therefore check, for
each of these keys that an inheriting config file (or ``--cfg-options``)
sets at top level, that every place using it holds the same value:

- ``data_root``: each dataloader's dataset (through dataset wrappers), and
  an evaluator's ``ann_file``, which must be its dataset's annotation file;
- ``metainfo``: each dataloader's dataset's ``classes``, and a palette with
  at least one colour per class;
- ``num_classes``: every ``num_classes`` under ``model``.

Any other top-level variable set by ``--cfg-options`` (``max_iters``,
``norm_cfg`` ...) is as ineffective; :func:`unread_options` words a warning
for each, naming the keys to set instead.
"""
import ast
import difflib
import os.path as osp
from typing import Any, Iterable, Iterator, List, Set, Tuple

from mmengine.config import Config

from .data_check import iter_datasets

OVERRIDE_KEYS = ('data_root', 'metainfo', 'num_classes')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

FIXES = {
    'data_root': "train_dataloader = dict(dataset=dict(data_root=data_root)) "
                 "(the same for val_dataloader and test_dataloader) and "
                 "val_evaluator = dict(ann_file=data_root + '<annotation "
                 "file>') (the same for test_evaluator)",
    'metainfo': 'train_dataloader = dict(dataset=dict(metainfo=metainfo)) '
                '(the same for val_dataloader and test_dataloader), and '
                'give metainfo a palette with one (R, G, B) per class',
    'num_classes': 'each of them to num_classes, e.g. model = dict('
                   'roi_head=dict(bbox_head=dict(num_classes=num_classes)))',
}


class ConfigOverrideError(ValueError):
    """A top-level config value that does not reach where it is used."""


def inherited_top_level_keys(path: str) -> Set[str]:
    """The keys of :data:`OVERRIDE_KEYS` that config file ``path`` assigns
    at top level, if it inherits (``_base_``); empty otherwise.

    A config without ``_base_`` (e.g. one written by ``Config.dump``)
    expands every value itself, so its top-level values need not match.
    """
    if not path.endswith('.py'):
        return set()
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    assigned = set()
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target]
                   if isinstance(node, (ast.AnnAssign, ast.AugAssign))
                   else [])
        assigned.update(t.id for t in targets if isinstance(t, ast.Name))
    if '_base_' not in assigned:
        return set()
    return assigned & set(OVERRIDE_KEYS)


def _loader_datasets(cfg: Config) -> Iterator[Tuple[str, dict]]:
    for loader in LOADERS:
        if cfg.get(loader) and cfg[loader].get('dataset') is not None:
            for ds in iter_datasets(cfg[loader].dataset):
                yield f'{loader}.dataset', ds


def _num_classes_sites(node, path: str) -> Iterator[Tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'num_classes':
                yield f'{path}.num_classes', value
            else:
                yield from _num_classes_sites(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _num_classes_sites(value, f'{path}[{i}]')


def _evaluators(cfg: Config, split: str) -> List[dict]:
    evaluator = cfg.get(f'{split}_evaluator')
    if isinstance(evaluator, dict):
        return [evaluator]
    return [e for e in evaluator or [] if isinstance(e, dict)]


def _mismatches(cfg: Config, key: str) -> List[str]:
    """``'where = value'`` for each place that disagrees with ``cfg[key]``."""
    value = cfg[key]
    found = []
    if key == 'num_classes':
        for where, site in _num_classes_sites(cfg.get('model'), 'model'):
            if site != value:
                found.append(f'{where} = {site!r}')
    elif key == 'data_root':
        for where, ds in _loader_datasets(cfg):
            if ds.get('data_root') != value:
                found.append(f"{where}.data_root = {ds.get('data_root')!r}")
        for split in ('val', 'test'):
            loader = cfg.get(f'{split}_dataloader') or {}
            datasets = list(iter_datasets(loader.get('dataset') or {}))
            ann = datasets[0].get('ann_file') if len(datasets) == 1 else None
            if not ann:
                continue
            expected = osp.normpath(
                osp.join(datasets[0].get('data_root') or '', ann))
            for i, ev in enumerate(_evaluators(cfg, split)):
                if ev.get('ann_file') and osp.normpath(
                        ev['ann_file']) != expected:
                    where = f'{split}_evaluator' + (
                        f'[{i}]' if isinstance(
                            cfg[f'{split}_evaluator'], list) else '')
                    found.append(f"{where}.ann_file = {ev['ann_file']!r} "
                                 f'(its dataset reads {expected!r})')
    else:
        classes = tuple((value or {}).get('classes') or ())
        for where, ds in _loader_datasets(cfg):
            meta = ds.get('metainfo') or {}
            if tuple(meta.get('classes') or ()) != classes:
                found.append(f"{where}.metainfo.classes = "
                             f"{meta.get('classes')!r}")
            palette = meta.get('palette')
            if isinstance(palette, (list, tuple)) and \
                    len(palette) < len(classes):
                found.append(
                    f'{where}.metainfo.palette has {len(palette)} colours '
                    f'for {len(classes)} classes (a palette merged from the '
                    f"base's metainfo?)")
    return found


def check_top_level_overrides(cfg: Config, keys: Iterable[str],
                              source: str) -> None:
    """Check that each top-level ``key`` reaches every place that uses it.

    Args:
        cfg (Config): The loaded config.
        keys (iterable[str]): Keys of :data:`OVERRIDE_KEYS` that ``source``
            sets at top level.
        source (str): Who set them, for the message (a config path or
            ``--cfg-options``).

    Raises:
        ConfigOverrideError: Names each key, its top-level value, every
            place holding another value and the lines that fix it.
    """
    problems = []
    for key in sorted(set(keys) & set(OVERRIDE_KEYS)):
        if key not in cfg:
            continue
        mismatches = _mismatches(cfg, key)
        if mismatches:
            places = '\n    '.join(mismatches)
            problems.append(
                f'{source} sets top-level {key} = {cfg[key]!r}, but these '
                f'places disagree:\n    {places}\n  A top-level value '
                f'reaches nothing by itself (the base config expanded its '
                f'own into these places) and dicts merge with the base\'s. '
                f'Set {FIXES[key]}')
    if problems:
        raise ConfigOverrideError(
            '\n'.join(problems) + '\n(docs/custom_dataset.md shows a '
            'complete config)')


# The top-level config keys something reads once the config is loaded:
# mmengine's Runner (Runner.from_cfg and its own cfg.get calls) and vovdet's
# tools. Any other top-level variable (data_root, max_iters, norm_cfg ...)
# was already copied into the keys that use it when the file was read.
READ_TOP_LEVEL_KEYS = frozenset((
    'model', 'work_dir', 'train_dataloader', 'val_dataloader',
    'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr',
    'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level',
    'visualizer', 'default_scope', 'randomness', 'experiment_name',
    'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'compile',
    'runner_type'))


def _config_paths(node: Any, path: str):
    """``(dotted path, value)`` of every entry under a config node."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}' if path else str(key)
            yield sub, value
            yield from _config_paths(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield f'{path}.{i}', value
            yield from _config_paths(value, f'{path}.{i}')


def unread_options(cfg: Config, options: dict) -> List[str]:
    """Warnings for ``--cfg-options`` keys that nothing will read.

    mmengine expands a config's top-level variables (``data_root``,
    ``max_iters``, ``norm_cfg`` ...) into the keys that use them when it
    reads the file, so overriding the variable afterwards changes nothing.
    Each warning names the option and the keys that hold the variable's
    value (found by comparing values) to set instead, or, for a key the
    config does not have, the closest keys it has.

    Args:
        cfg (Config): The config as read, before the options are merged.
        options (dict): The parsed ``--cfg-options``.

    Returns:
        list[str]: One message per unread option.
    """
    read = {name: cfg[name] for name in cfg if name in READ_TOP_LEVEL_KEYS}
    paths = list(_config_paths(read, ''))
    messages = []
    for key, new in options.items():
        top, _, rest = key.partition('.')
        # OVERRIDE_KEYS are refused by check_top_level_overrides instead
        if top in READ_TOP_LEVEL_KEYS or top in OVERRIDE_KEYS:
            continue
        tail = f'.{rest}' if rest else ''
        if top not in cfg:
            close = difflib.get_close_matches(
                key.rsplit('.', 1)[-1],
                {path.rsplit('.', 1)[-1] for path, _ in paths}, cutoff=0.8)
            similar = [path for path, _ in paths
                       if path.rsplit('.', 1)[-1] in close][:4]
            hint = (f"; did you mean {' or '.join(similar)}?"
                    if similar else '')
            messages.append(
                f"--cfg-options {key}: the config has no key '{top}' and "
                f'nothing reads it, so the option changes nothing{hint}')
            continue
        value = cfg[top]
        same = [path for path, other in paths
                if type(other) is type(value) and other == value]
        derived = [path for path, other in paths
                   if isinstance(value, str) and value
                   and isinstance(other, str) and other != value
                   and other.startswith(value)]
        where = ', '.join(f'{path}{tail}' for path in same[:6]) + (
            ', ...' if len(same) > 6 else '')
        if derived:
            where += ('; derived from it: ' if same else '') + ', '.join(
                derived[:4])
        hint = (f'; set the keys that hold its value instead: {where} '
                f'(e.g. --cfg-options {(same or derived)[0]}{tail}={new})'
                if same or derived else
                '; set the keys that use it instead')
        messages.append(
            f'--cfg-options {key}: {top} is a top-level variable of the '
            'config, which was already copied into the keys that use it '
            f'when the file was read, so the option changes nothing{hint}')
    return messages
