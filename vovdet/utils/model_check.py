"""Does the model fit its data, itself and its checkpoint?

Each check replaces a failure that came late, raw or not at all:

- :func:`check_num_classes` (before the runner is built): a head's
  ``num_classes`` that differs from the dataset's classes trained silently
  (RefineDet, DSOD, ``num_classes=80`` on 4 classes) or died with a bare
  ``IndexError`` (Mask R-CNN).
- :func:`check_neck_channels` (right after the detector is built): a neck
  ``in_channels`` that does not match the backbone's outputs failed with a
  raw conv error at the first forward.
- :func:`explain_group_norm_error` (when building the detector failed): a
  GN ``num_groups`` that does not divide a layer's channels gave torch's
  message, which names neither the layer nor the config key.
- :func:`state_dict_fit` (when a checkpoint is loaded, see
  :class:`vovdet.engine.CheckpointFitHook`): a checkpoint of another
  architecture loaded with dozens of buried "size mismatch" warnings.
"""
import copy
import math
import re
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.model import is_model_wrapper

from .data_check import iter_datasets, join_data_root


class ModelConfigError(ValueError):
    """The model config does not fit its dataset or itself."""


# Heads whose num_classes is not the number of dataset classes: the RPN
# (object / background) and HTC's semantic head (stuff + things).
_OTHER_NUM_CLASSES = ('rpn_head', 'semantic_head')


def _walk(node, path: str) -> Iterator[Tuple[str, dict]]:
    """``(path, dict)`` for every dict inside a config, depth first."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk(value, f'{path}.{i}')


def head_num_classes(model_cfg: ConfigDict) -> List[Tuple[str, int]]:
    """``(config key, value)`` of every head ``num_classes`` in a model
    config, e.g. ``('model.roi_head.bbox_head.num_classes', 80)``; the
    RPN's and HTC's semantic head's are left out."""
    found = []
    for path, node in _walk(model_cfg, 'model'):
        if 'num_classes' not in node:
            continue
        if any(part in _OTHER_NUM_CLASSES for part in path.split('.')):
            continue
        found.append((f'{path}.num_classes', node['num_classes']))
    return found


def dataset_classes(ds: ConfigDict) -> Tuple[Optional[Sequence[str]], str]:
    """The classes a dataset config will load, and where they come from.

    Returns:
        tuple: The class names (None when the dataset type is unknown) and
        ``'metainfo'`` (the config's ``metainfo.classes``) or the dataset
        type's name (its default ``METAINFO``).
    """
    metainfo = ds.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return tuple(metainfo['classes']), 'metainfo'
    from mmdet.registry import DATASETS
    dataset_type = DATASETS.get(ds.get('type', '')) if isinstance(
        ds.get('type'), str) else ds.get('type')
    classes = getattr(dataset_type, 'METAINFO', {}).get('classes')
    if classes is None:
        return None, ''
    return tuple(classes), dataset_type.__name__


def check_num_classes(cfg: Config, splits=('train', 'val', 'test')) -> None:
    """Check every head's ``num_classes`` against each dataset's classes.

    Args:
        cfg (Config): A full mmdet config.
        splits (Sequence[str]): Which ``{split}_dataloader`` datasets to
            compare with.

    Raises:
        ModelConfigError: A head's ``num_classes`` differs from the number
            of classes of a dataset; the message names the config keys,
            the dataset's annotation file and classes, and the fix.
    """
    heads = head_num_classes(cfg.model)
    if not heads:
        return
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or 'dataset' not in loader:
            continue
        for ds in iter_datasets(loader.dataset):
            classes, source = dataset_classes(ds)
            if classes is None:
                continue
            wrong = [(key, value) for key, value in heads
                     if value != len(classes)]
            if not wrong:
                continue
            ann_file = join_data_root(
                ds.get('data_root', '') or '',
                ds.get('ann_file', '')) or '(no ann_file)'
            origin = (f'{split}_dataloader.dataset.metainfo.classes'
                      if source == 'metainfo' else
                      f"{source}'s default classes")
            names = ', '.join(classes[:8]) + (
                ', ...' if len(classes) > 8 else '')
            keys = ' and '.join(f'{key}={value}' for key, value in wrong)
            fix = ' '.join(f'{key}={len(classes)}' for key, _ in wrong)
            raise ModelConfigError(
                f'{keys}, but the {split} dataset has {len(classes)} '
                f"classes in '{ann_file}' ({names}; from {origin}). Set the "
                f'head(s) to the dataset: --cfg-options {fix}, or give the '
                f'dataset the classes the model was made for in '
                f'{split}_dataloader.dataset.metainfo.classes')


def backbone_out_channels(backbone: nn.Module,
                          in_channels: int = 3,
                          size: int = 64) -> List[int]:
    """The channels of each feature map ``backbone`` returns, found by a
    forward pass of one ``size`` x ``size`` zero image (in eval mode, no
    gradients; the module's mode is restored)."""
    param = next(backbone.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            feats = backbone(
                torch.zeros(1, in_channels, size, size, device=device))
    finally:
        backbone.train(was_training)
    if isinstance(feats, torch.Tensor):
        feats = [feats]
    return [int(f.shape[1]) for f in feats]


def check_neck_channels(model: nn.Module, model_cfg: ConfigDict) -> None:
    """Check the neck's ``in_channels`` against the backbone's outputs.

    Args:
        model (nn.Module): The built detector (or its DDP wrapper).
        model_cfg (ConfigDict): The config it was built from.

    Raises:
        ModelConfigError: They differ; the message gives both lists and
            the config keys.
    """
    if is_model_wrapper(model):
        model = model.module
    neck_cfg = model_cfg.get('neck')
    if (not isinstance(neck_cfg, dict) or 'in_channels' not in neck_cfg
            or not isinstance(getattr(model, 'backbone', None), nn.Module)):
        return
    outputs = backbone_out_channels(
        model.backbone, model_cfg.backbone.get('in_channels', 3))
    expected = neck_cfg.in_channels
    if isinstance(expected, int):  # single-input necks read the last map
        fits, outputs_read = outputs[-1] == expected, outputs[-1]
    else:
        expected = list(expected)
        fits, outputs_read = outputs == expected, outputs
    if fits:
        return
    backbone = model_cfg.backbone
    name = ' '.join(str(backbone.get(k)) for k in ('type', 'arch')
                    if backbone.get(k) is not None)
    raise ModelConfigError(
        f'model.neck.in_channels={expected}, but the backbone ({name}, '
        f'out_indices={backbone.get("out_indices", "default")}) outputs '
        f'{outputs_read} channels. After a backbone swap set '
        f'model.neck.in_channels={outputs_read} (or change '
        'model.backbone.out_indices)')


def is_group_norm_cfg(node: dict) -> bool:
    """Whether a norm config builds a GroupNorm (``'GN'`` or
    ``'GroupNorm'``) with its ``num_groups``."""
    return node.get('type') in ('GN', 'GroupNorm') and 'num_groups' in node


def _group_norm_error(error: BaseException) -> bool:
    """Whether ``error`` is torch's GroupNorm divisibility error."""
    return 'divisible by num_groups' in str(error)


def explain_group_norm_error(model_cfg: ConfigDict,
                             error: BaseException) -> Optional[str]:
    """Name the layers and config keys behind torch's "num_channels must be
    divisible by num_groups" error.

    The detector is built again with every GN config set to one group
    (which divides any width); then each ``GroupNorm`` layer is matched to
    the GN config of the closest component above it (``model.backbone``,
    ``model.neck``, ``model.roi_head.bbox_head`` ...) and its channels are
    checked against that config's ``num_groups``.

    Args:
        model_cfg (ConfigDict): The model config that failed to build.
        error (BaseException): The error building it raised.

    Returns:
        str or None: The message, or None when ``error`` is not the GN
        error (or no layer explains it).
    """
    if not _group_norm_error(error):
        return None
    from mmdet.registry import MODELS
    relaxed = copy.deepcopy(model_cfg)
    groups = {}  # module prefix -> (config key, num_groups)
    for path, node in _walk(relaxed, 'model'):
        if is_group_norm_cfg(node):
            owner = path.rsplit('.', 1)[0]
            groups.setdefault(owner[len('model.'):] if owner != 'model'
                              else '', (f'{path}.num_groups',
                                        node['num_groups']))
            node['num_groups'] = 1
    model = MODELS.build(relaxed)
    names = {name for name, _ in model.named_modules()}
    # a GN config inside a component's sub-config (``stage_cfg.norm_cfg``)
    # belongs to the closest enclosing module
    owners = {}
    for prefix, value in groups.items():
        while prefix and prefix not in names:
            prefix = prefix.rsplit('.', 1)[0] if '.' in prefix else ''
        owners.setdefault(prefix, value)
    bad = {}  # config key -> (num_groups, [(layer, channels)], all widths)
    for name, module in model.named_modules():
        if not isinstance(module, nn.GroupNorm):
            continue
        owner = max((p for p in owners
                     if not p or name == p or name.startswith(p + '.')),
                    key=len, default=None)
        if owner is None:
            continue
        key, num_groups = owners[owner]
        entry = bad.setdefault(key, (num_groups, [], set()))
        entry[2].add(module.num_channels)
        if module.num_channels % num_groups:
            entry[1].append((f'model.{name}', module.num_channels))
    parts = []
    for key, (num_groups, layers, widths) in bad.items():
        if not layers:
            continue
        common = math.gcd(*widths)
        fit = max(g for g in range(1, num_groups + 1) if common % g == 0)
        shown = ', '.join(f'{layer} ({channels} channels)'
                          for layer, channels in layers[:3])
        more = f' and {len(layers) - 3} more' if len(layers) > 3 else ''
        parts.append(
            f'{key}={num_groups} does not divide the channels of '
            f'{len(layers)} GroupNorm layer(s): {shown}{more}; set {key} '
            f'to a divisor of every width there ({fit} is the largest '
            f'that fits, e.g. --cfg-options {key}={fit})')
    return '; '.join(parts) or None


@dataclass
class StateDictFit:
    """How a checkpoint's ``state_dict`` fits a model's.

    Attributes:
        loaded (list[str]): Model keys the checkpoint has, same shape.
        missing (list[str]): Model keys the checkpoint lacks (BN
            ``num_batches_tracked`` left out, as mmengine does).
        mismatched (list[tuple]): ``(key, checkpoint shape, model shape)``.
        unused (list[str]): Checkpoint keys the model does not have.
        model_keys (int): Number of keys of the model's ``state_dict``.
    """
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    model_keys: int = 0

    @property
    def exact(self) -> bool:
        return not (self.missing or self.mismatched or self.unused)

    def loaded_under(self, prefix: str) -> Tuple[int, int]:
        """``(loaded, total)`` model keys under ``prefix`` (e.g.
        ``'backbone.'``)."""
        total = sum(1 for key in self.loaded + self.missing
                    if key.startswith(prefix)) + sum(
                        1 for key, _, _ in self.mismatched
                        if key.startswith(prefix))
        return sum(1 for key in self.loaded if key.startswith(prefix)), total

    def summary(self, first: int = 3) -> str:
        """Counts and the first ``first`` keys of each kind, one line."""
        parts = [f'{len(self.loaded)} of the model\'s {self.model_keys} '
                 'tensors fit']
        if self.mismatched:
            shown = ', '.join(
                f'{key} {tuple(ckpt)} vs {tuple(model)}'
                for key, ckpt, model in self.mismatched[:first])
            parts.append(f'{len(self.mismatched)} have another shape in the '
                         f'checkpoint (checkpoint vs model: {shown}'
                         f"{', ...' if len(self.mismatched) > first else ''})")
        for keys, what in ((self.missing, 'are missing from the checkpoint'),
                           (self.unused,
                            'checkpoint tensors are not in the model')):
            if keys:
                parts.append(f'{len(keys)} {what} ({", ".join(keys[:first])}'
                             f"{', ...' if len(keys) > first else ''})")
        return '; '.join(parts)


def strip_ddp_prefix(state: dict) -> dict:
    """``state`` without the ``module.`` prefix a DDP-wrapped model's keys
    have (mmengine's loader strips it too)."""
    return {re.sub(r'^module\.', '', key): value
            for key, value in state.items()}


def state_dict_fit(model_state: dict, checkpoint_state: dict) -> StateDictFit:
    """Compare a checkpoint's ``state_dict`` with a model's, key by key
    (after :func:`strip_ddp_prefix`)."""
    ckpt = strip_ddp_prefix(checkpoint_state)
    fit = StateDictFit(model_keys=len(model_state))
    for key, value in model_state.items():
        if key not in ckpt:
            if 'num_batches_tracked' not in key:
                fit.missing.append(key)
            continue
        other = ckpt[key]
        if hasattr(other, 'shape') and tuple(other.shape) != tuple(
                value.shape):
            fit.mismatched.append((key, tuple(other.shape),
                                   tuple(value.shape)))
        else:
            fit.loaded.append(key)
    fit.unused = [key for key in ckpt if key not in model_state]
    return fit
