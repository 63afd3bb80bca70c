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
"""
import ast
import os.path as osp
from typing import Iterable, Iterator, List, Set, Tuple

from mmengine.config import Config

from .data_check import _iter_datasets

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
            for ds in _iter_datasets(cfg[loader].dataset):
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
            datasets = list(_iter_datasets(loader.get('dataset') or {}))
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
