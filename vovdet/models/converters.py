"""Convert ImageNet checkpoints of other code bases into vovdet backbones.

Supported sources (``SOURCES``) and the backbones they become:

- ``'timm'``: ``vovnet39a``, ``vovnet57a`` and ``ese_vovnet19b_slim_dw``,
  ``ese_vovnet19b_dw``, ``ese_vovnet19b_slim``,
  ``ese_vovnet39b``, ``ese_vovnet57b``, ``ese_vovnet99b`` -> :class:`VoVNet`
  with ``stem_stride_mode='pytorch'`` and (V2) ``ese_placement='last'``;
  ``repvgg_a0`` .. ``repvgg_b3g4`` (timm's ``byobnet.py``, training or
  re-parameterised form) -> :class:`RepVGG`; ``efficientnet_b0`` .. ``b7``
  -> :class:`VoVDetEfficientNet` with ``with_head_conv=True`` and BN eps
  1e-5.
- ``'repvgg-official'``: ``RepVGG-A0`` .. ``RepVGG-B3g4`` of the authors'
  repository (``rbr_dense``/``rbr_1x1``/``rbr_identity`` or the deploy
  ``rbr_reparam``) -> :class:`RepVGG`.
- ``'torchvision'``: ``densenet121/161/201`` (current keys and the old
  ``norm.1``-style ones) -> :class:`DenseNet`.

Every source key is either renamed to a key of the target backbone with the
same shape or is a classifier key dropped on purpose (``ConvertedWeights.
dropped_keys``); any other key, any target key left without a value and any
shape mismatch is a :class:`WeightConversionError`. The one exception is a
BN ``num_batches_tracked`` counter that old checkpoints do not have: it is
filled with 0 (it does not affect the forward pass) and listed in
``ConvertedWeights.filled_keys``.
"""
import io
import json
import os.path as osp
import re
import struct
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
from mmdet.registry import MODELS

from ..utils.fileio import atomic_write
from .backbones.densenet import arch_settings as DENSENET_ARCHS
from .backbones.efficientnet import (B0_BLOCK_GROUPS, STAGE_BLOCK_GROUPS,
                                     round_repeats)
from .backbones.efficientnet import arch_settings as EFFICIENTNET_ARCHS
from .backbones.repvgg import arch_settings as REPVGG_ARCHS
from .backbones.vovnet import arch_settings as VOVNET_ARCHS

SOURCES = ('timm', 'repvgg-official', 'torchvision')

# timm model name -> VoVNet arch. timm's 'a' models are VoVNet V1 (no
# residual, no eSE); its 'b' models are V2 with eSE in the last module of a
# stage only (timm ``OsaStage``: ``attn if last_block``).
TIMM_VOVNET = {
    'vovnet39a': 'V-39',
    'vovnet57a': 'V-57',
    'ese_vovnet19b_slim_dw': 'V2-19-slim-dw',
    'ese_vovnet19b_dw': 'V2-19-dw',
    'ese_vovnet19b_slim': 'V2-19-slim',
    'ese_vovnet39b': 'V2-39',
    'ese_vovnet57b': 'V2-57',
    'ese_vovnet99b': 'V2-99',
}
# timm has no repvgg_b1g2.
TIMM_REPVGG = {
    f'repvgg_{arch.lower()}': arch
    for arch in REPVGG_ARCHS if arch != 'B1g2'
}
TIMM_EFFICIENTNET = {f'efficientnet_{arch}': arch
                     for arch in EFFICIENTNET_ARCHS}
OFFICIAL_REPVGG = {f'RepVGG-{arch}': arch for arch in REPVGG_ARCHS}
TORCHVISION_DENSENET = {f'densenet{arch}': arch for arch in DENSENET_ARCHS}

SUPPORTED_MODELS = {
    'timm': (*TIMM_VOVNET, *TIMM_REPVGG, *TIMM_EFFICIENTNET),
    'repvgg-official': tuple(OFFICIAL_REPVGG),
    'torchvision': tuple(TORCHVISION_DENSENET),
}

# Source models whose weights would not give identical features in any
# vovdet backbone, with the reason.
_NOT_EXACT = {
    'tf_efficientnet_': (
        "timm's tf_efficientnet_* models pad their stride-2 convs with "
        "TensorFlow 'SAME' padding (asymmetric, input-size dependent) while "
        'VoVDetEfficientNet pads symmetrically (k // 2), so converted '
        'weights would not reproduce their features; convert the '
        "PyTorch-trained 'efficientnet_b*' models instead"),
}


class WeightConversionError(ValueError):
    """A checkpoint does not match the layout of the model it is said to be."""


class ConvertedWeights(NamedTuple):
    """The result of a conversion.

    Attributes:
        state_dict (OrderedDict[str, Tensor]): Weights in the order of the
            target backbone's ``state_dict()``.
        backbone_cfg (dict): The backbone config these weights reproduce the
            source model with (put it in ``model.backbone``).
        dropped_keys (tuple[str]): Source keys dropped on purpose (the
            ImageNet classifier).
        filled_keys (tuple[str]): Target BN ``num_batches_tracked`` counters
            that the source did not have, set to 0.
    """
    state_dict: 'OrderedDict[str, torch.Tensor]'
    backbone_cfg: dict
    dropped_keys: Tuple[str, ...]
    filled_keys: Tuple[str, ...]


class _Layout(NamedTuple):
    backbone_cfg: dict
    rename: Callable[[str], Optional[str]]
    dropped: str  # regex of the source keys dropped on purpose


def _replace_prefix(text: str, table: Dict[str, str]) -> Optional[str]:
    """Rename the leading module name of ``text`` by ``table``, else None."""
    for old, new in table.items():
        if text.startswith(old):
            return new + text[len(old):]
    return None


# timm ``ConvNormAct`` / ``SeparableConvNormAct`` -> mmcv ``ConvModule`` /
# ``DepthwiseSeparableConvModule`` (whose depthwise conv has no norm).
_CONV_NORM = {'conv.': 'conv.', 'bn.': 'bn.'}
_SEPARABLE_CONV_NORM = {
    'conv_dw.': 'depthwise_conv.conv.',
    'conv_pw.': 'pointwise_conv.conv.',
    'bn.': 'pointwise_conv.bn.',
}


def _timm_vovnet(name: str, keys: List[str]) -> _Layout:
    arch = TIMM_VOVNET[name]
    setting = VOVNET_ARCHS[arch]
    depthwise = setting['depthwise']
    cfg = dict(type='VoVNet', arch=arch, stem_stride_mode='pytorch')
    if setting['ese']:
        cfg['ese_placement'] = 'last'

    def rename(key: str) -> Optional[str]:
        m = re.fullmatch(r'stem\.(\d+)\.(.+)', key)
        if m:
            unit = (_SEPARABLE_CONV_NORM
                    if depthwise and m[1] != '0' else _CONV_NORM)
            rest = _replace_prefix(m[2], unit)
            return rest and f'stem.{m[1]}.{rest}'
        m = re.fullmatch(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)', key)
        if not m:
            return None
        stage, block = int(m[1]), int(m[2])
        # With the 'pytorch' stem (timm's default stem_stride=4) stage1 has
        # no max-pool, so its modules start at index 0 of the Sequential;
        # stages 2-4 start with the pool.
        prefix = f'stage{stage + 1}.{block + (stage > 0)}.'
        rest = m[3]
        m = re.fullmatch(r'conv_mid\.(\d+)\.(.+)', rest)
        if m:
            unit = _SEPARABLE_CONV_NORM if depthwise else _CONV_NORM
            layer = _replace_prefix(m[2], unit)
            return layer and f'{prefix}layers.{m[1]}.{layer}'
        for old, new in (('conv_reduction.', 'reduction.'),
                         ('conv_concat.', 'aggregation.')):
            if rest.startswith(old):
                layer = _replace_prefix(rest[len(old):], _CONV_NORM)
                return layer and f'{prefix}{new}{layer}'
        # timm's EffectiveSEModule and mmdet's ChannelAttention are both a
        # 1x1 conv with bias on the global average and a hard sigmoid.
        m = re.fullmatch(r'attn\.fc\.(weight|bias)', rest)
        return m and f'{prefix}ese.fc.{m[1]}'

    return _Layout(cfg, rename, r'head\.fc\.(weight|bias)')


# RepVGG branch names of timm's ``RepVggBlock`` and the official
# ``RepVGGBlock`` -> :class:`RepVGGBlock`.
_TIMM_REPVGG_BRANCHES = {
    'conv_kxk.': 'branch_3x3.',
    'conv_1x1.': 'branch_1x1.',
    'identity.': 'branch_identity.',
    'reparam_conv.': 'fused_conv.',
}
_OFFICIAL_REPVGG_BRANCHES = {
    'rbr_dense.': 'branch_3x3.',
    'rbr_1x1.': 'branch_1x1.',
    'rbr_identity.': 'branch_identity.',
    'rbr_reparam.': 'fused_conv.',
}


def _repvgg_cfg(arch: str, keys: List[str], deploy_branch: str) -> dict:
    # A re-parameterised checkpoint loads into RepVGG(deploy=True).
    deploy = any(deploy_branch in key for key in keys)
    return dict(type='RepVGG', arch=arch, deploy=deploy)


def _timm_repvgg(name: str, keys: List[str]) -> _Layout:
    cfg = _repvgg_cfg(TIMM_REPVGG[name], keys, 'reparam_conv.')

    def rename(key: str) -> Optional[str]:
        m = re.fullmatch(r'(stem|stages\.(\d+)\.(\d+))\.(.+)', key)
        if not m:
            return None
        block = 'stem' if m[1] == 'stem' else f'stage{int(m[2]) + 1}.{m[3]}'
        rest = _replace_prefix(m[4], _TIMM_REPVGG_BRANCHES)
        return rest and f'{block}.{rest}'

    return _Layout(cfg, rename, r'head\.fc\.(weight|bias)')


def _official_repvgg(name: str, keys: List[str]) -> _Layout:
    cfg = _repvgg_cfg(OFFICIAL_REPVGG[name], keys, 'rbr_reparam.')

    def rename(key: str) -> Optional[str]:
        m = re.fullmatch(r'stage(0|[1-4]\.\d+)\.(.+)', key)
        if not m:
            return None
        block = 'stem' if m[1] == '0' else f'stage{m[1]}'
        rest = _replace_prefix(m[2], _OFFICIAL_REPVGG_BRANCHES)
        return rest and f'{block}.{rest}'

    return _Layout(cfg, rename, r'linear\.(weight|bias)')


# timm ``DepthwiseSeparableConv`` (expansion 1) and ``InvertedResidual``
# -> mmdet ``InvertedResidual``.
_TIMM_DS_BLOCK = {
    'conv_dw.': 'depthwise_conv.conv.',
    'bn1.': 'depthwise_conv.bn.',
    'se.conv_reduce.': 'se.conv1.conv.',
    'se.conv_expand.': 'se.conv2.conv.',
    'conv_pw.': 'linear_conv.conv.',
    'bn2.': 'linear_conv.bn.',
}
_TIMM_IR_BLOCK = {
    'conv_pw.': 'expand_conv.conv.',
    'bn1.': 'expand_conv.bn.',
    'conv_dw.': 'depthwise_conv.conv.',
    'bn2.': 'depthwise_conv.bn.',
    'se.conv_reduce.': 'se.conv1.conv.',
    'se.conv_expand.': 'se.conv2.conv.',
    'conv_pwl.': 'linear_conv.conv.',
    'bn3.': 'linear_conv.bn.',
}


def _timm_efficientnet(name: str, keys: List[str]) -> _Layout:
    arch = TIMM_EFFICIENTNET[name]
    depth = EFFICIENTNET_ARCHS[arch].depth_factor
    repeats = [round_repeats(g.num_repeats, depth) for g in B0_BLOCK_GROUPS]
    # timm's blocks.<group>.<j> -> our (stage, index in the stage).
    position = {}
    for stage, groups in enumerate(STAGE_BLOCK_GROUPS):
        index = 0
        for group in groups:
            position[group] = (stage + 1, index)
            index += repeats[group]
    num_last = sum(repeats[g] for g in STAGE_BLOCK_GROUPS[-1])
    head = f'stage{len(STAGE_BLOCK_GROUPS)}.{num_last}.'
    # timm builds efficientnet_b* with torch's default BN (eps 1e-5, momentum
    # 0.1), not the TF values (1e-3, 0.01) VoVDetEfficientNet defaults to.
    cfg = dict(type='VoVDetEfficientNet', arch=arch, with_head_conv=True,
               norm_cfg=dict(type='BN', eps=1e-5, requires_grad=True))

    def rename(key: str) -> Optional[str]:
        m = re.fullmatch(r'blocks\.(\d+)\.(\d+)\.(.+)', key)
        if m:
            group, j = int(m[1]), int(m[2])
            if group not in position:
                return None
            stage, start = position[group]
            table = (_TIMM_DS_BLOCK if B0_BLOCK_GROUPS[group].expand_ratio
                     == 1 else _TIMM_IR_BLOCK)
            rest = _replace_prefix(m[3], table)
            return rest and f'stage{stage}.{start + j}.{rest}'
        return _replace_prefix(
            key, {
                'conv_stem.': 'stem.conv.',
                'bn1.': 'stem.bn.',
                'conv_head.': f'{head}conv.',
                'bn2.': f'{head}bn.',
            })

    return _Layout(cfg, rename, r'classifier\.(weight|bias)')


def _torchvision_densenet(name: str, keys: List[str]) -> _Layout:
    arch = TORCHVISION_DENSENET[name]
    last = len(DENSENET_ARCHS[arch]['blocks_per_stage'])
    cfg = dict(type='DenseNet', arch=arch)

    def rename(key: str) -> Optional[str]:
        # Checkpoints written before torchvision 0.3 name the dense-layer
        # modules 'norm.1', 'conv.2', ...; torchvision renames them on load.
        key = re.sub(r'(denselayer\d+\.(?:norm|conv))\.([12])\.', r'\1\2.',
                     key)
        m = re.fullmatch(r'features\.denseblock(\d+)\.(.+)', key)
        if m:
            return f'stage{m[1]}.denseblock.{m[2]}'
        m = re.fullmatch(r'features\.transition(\d+)\.(.+)', key)
        if m:
            return f'stage{int(m[1]) + 1}.transition.{m[2]}'
        return _replace_prefix(
            key, {
                'features.conv0.': 'stem.conv.',
                'features.norm0.': 'stem.norm.',
                'features.norm5.': f'stage{last}.norm.',
            })

    return _Layout(cfg, rename, r'classifier\.(weight|bias)')


def _layout(source: str, model: str, keys: List[str]) -> _Layout:
    if source not in SOURCES:
        raise WeightConversionError(
            f"unknown source '{source}'; choose one of {', '.join(SOURCES)}")
    builders = {
        'timm': [(TIMM_VOVNET, _timm_vovnet), (TIMM_REPVGG, _timm_repvgg),
                 (TIMM_EFFICIENTNET, _timm_efficientnet)],
        'repvgg-official': [(OFFICIAL_REPVGG, _official_repvgg)],
        'torchvision': [(TORCHVISION_DENSENET, _torchvision_densenet)],
    }[source]
    for names, build in builders:
        if model in names:
            return build(model, keys)
    for prefix, reason in _NOT_EXACT.items():
        if model.startswith(prefix):
            raise WeightConversionError(f"cannot convert '{model}': {reason}")
    raise WeightConversionError(
        f"unknown {source} model '{model}'; choose one of "
        f"{', '.join(SUPPORTED_MODELS[source])}")


def target_state_dict_shapes(backbone_cfg: dict) -> Dict[str, torch.Size]:
    """Key names and shapes of a backbone's state dict, without weights.

    The backbone is built on the meta device, so this is cheap even for
    the largest models.

    Args:
        backbone_cfg (dict): Backbone config for mmdet's ``MODELS``.

    Returns:
        dict[str, torch.Size]: ``state_dict()`` keys in order and shapes.
    """
    with torch.device('meta'):
        backbone = MODELS.build(backbone_cfg)
    return OrderedDict(
        (key, value.shape) for key, value in backbone.state_dict().items())


def convert_state_dict(source: str, model: str,
                       state_dict: Dict[str, torch.Tensor]
                       ) -> ConvertedWeights:
    """Rename the keys of a source model's state dict into our backbone's.

    Args:
        source (str): One of :data:`SOURCES`.
        model (str): The source model's name, one of
            ``SUPPORTED_MODELS[source]`` (e.g. ``'ese_vovnet39b'``).
        state_dict (dict[str, Tensor]): The source model's state dict.

    Returns:
        ConvertedWeights: The renamed weights (the tensors themselves are
        not copied), the backbone config that reproduces the source model,
        and the keys dropped or filled.

    Raises:
        WeightConversionError: Unknown source/model, a source key that is
            neither mapped nor a classifier key, a target key without a
            value, or a shape mismatch.
    """
    keys = list(state_dict)
    layout = _layout(source, model, keys)
    converted, origin, dropped, unknown = OrderedDict(), {}, [], []
    for key in keys:
        if re.fullmatch(layout.dropped, key):
            dropped.append(key)
            continue
        new_key = layout.rename(key)
        if new_key is None:
            unknown.append(key)
            continue
        if new_key in converted:
            raise WeightConversionError(
                f"'{key}' and '{origin[new_key]}' both map to '{new_key}'")
        converted[new_key] = state_dict[key]
        origin[new_key] = key
    if unknown:
        raise WeightConversionError(
            f'{len(unknown)} keys of the checkpoint are not part of a '
            f'{source} {model}: {_preview(unknown)}. Is --model right?')

    target = target_state_dict_shapes(layout.backbone_cfg)
    unexpected = [f"'{origin[k]}' -> '{k}'" for k in converted
                  if k not in target]
    if unexpected:
        raise WeightConversionError(
            f"{len(unexpected)} keys of the checkpoint map to names that "
            f"{layout.backbone_cfg} does not have: {_preview(unexpected)}. "
            f'Is --model right?')
    shapes = [
        f"'{origin[k]}' {tuple(converted[k].shape)} -> '{k}' "
        f'{tuple(shape)}' for k, shape in target.items()
        if k in converted and converted[k].shape != shape
    ]
    if shapes:
        raise WeightConversionError(
            f'{len(shapes)} shape mismatches (is --model right?): '
            f'{_preview(shapes)}')
    missing = [k for k in target if k not in converted]
    filled = [k for k in missing if k.endswith('.num_batches_tracked')]
    missing = [k for k in missing if k not in filled]
    if missing:
        raise WeightConversionError(
            f'the checkpoint has no value for {len(missing)} weights of '
            f'{layout.backbone_cfg}: {_preview(missing)}. Is --model right?')
    ordered = OrderedDict()
    for key in target:
        ordered[key] = (converted[key] if key in converted else torch.zeros(
            (), dtype=torch.long))
    return ConvertedWeights(ordered, layout.backbone_cfg, tuple(dropped),
                            tuple(filled))


def _preview(items: List[str], limit: int = 8) -> str:
    shown = ', '.join(items[:limit])
    return shown + (f', ... ({len(items) - limit} more)'
                    if len(items) > limit else '')


# safetensors dtype names (the format's header) -> torch dtypes.
_SAFETENSORS_DTYPES = {
    'F64': torch.float64,
    'F32': torch.float32,
    'F16': torch.float16,
    'BF16': torch.bfloat16,
    'I64': torch.int64,
    'I32': torch.int32,
    'I16': torch.int16,
    'I8': torch.int8,
    'U8': torch.uint8,
    'BOOL': torch.bool,
}


def load_safetensors(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Read a ``.safetensors`` file (the format timm's hub weights use).

    The format is an 8-byte little-endian header size, a JSON header with
    each tensor's dtype, shape and byte range, then the raw little-endian
    data; reading it needs no unpickling and no extra package.

    Args:
        path (str): File path.

    Returns:
        OrderedDict[str, Tensor]: The tensors in header order.
    """
    with open(path, 'rb') as f:
        header_size = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(header_size))
        data = f.read()
    header.pop('__metadata__', None)
    tensors = OrderedDict()
    for key, info in header.items():
        if info['dtype'] not in _SAFETENSORS_DTYPES:
            raise WeightConversionError(
                f"'{path}': tensor '{key}' has dtype {info['dtype']}, which "
                f"is not one of {', '.join(_SAFETENSORS_DTYPES)}")
        dtype = _SAFETENSORS_DTYPES[info['dtype']]
        start, end = info['data_offsets']
        if end == start:
            tensor = torch.empty(0, dtype=dtype)
        else:
            tensor = torch.frombuffer(bytearray(data[start:end]), dtype=dtype)
        tensors[key] = tensor.reshape(info['shape'])
    return tensors


def load_source_state_dict(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Load the state dict of a source checkpoint.

    ``.safetensors`` files are read directly; anything else goes through
    ``torch.load(weights_only=True)``. A ``state_dict`` or ``model`` entry
    (training checkpoints of timm and the RepVGG repository) is unwrapped
    and a ``module.`` prefix (``DataParallel``) stripped.

    Args:
        path (str): Checkpoint path.

    Returns:
        OrderedDict[str, Tensor]: The state dict.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if path.endswith('.safetensors'):
        checkpoint = load_safetensors(path)
    else:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and isinstance(
                checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict) or not all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightConversionError(
            f"'{path}' is not a state dict (a dict of tensors, possibly "
            f"under 'state_dict' or 'model')")
    if checkpoint and all(k.startswith('module.') for k in checkpoint):
        checkpoint = OrderedDict(
            (k[len('module.'):], v) for k, v in checkpoint.items())
    return OrderedDict(checkpoint)


def convert_checkpoint(source: str, model: str, in_path: str,
                       out_path: str) -> ConvertedWeights:
    """Convert a checkpoint file and save it for vovdet.

    The output holds ``state_dict`` (backbone keys, no ``backbone.`` prefix)
    and ``meta`` (source, model, backbone config, dropped and filled keys),
    so ``init_cfg=dict(type='Pretrained', checkpoint=out_path)`` on the
    backbone of ``meta['backbone']`` loads it.

    Args:
        source (str): One of :data:`SOURCES`.
        model (str): Source model name.
        in_path (str): Source checkpoint.
        out_path (str): Where to write the converted checkpoint.

    Returns:
        ConvertedWeights: What was written.
    """
    result = convert_state_dict(source, model, load_source_state_dict(in_path))
    meta = dict(
        converted_from=dict(source=source, model=model,
                            file=osp.basename(in_path)),
        backbone=result.backbone_cfg,
        dropped_keys=list(result.dropped_keys),
        filled_keys=list(result.filled_keys))
    buffer = io.BytesIO()
    torch.save(dict(state_dict=result.state_dict, meta=meta), buffer)
    atomic_write(buffer.getvalue(), out_path)
    return result
