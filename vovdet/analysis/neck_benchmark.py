"""FPN vs OSA-FPN vs OSA-PAFPN: params, FLOPs, MAC and CPU latency.

The necks are fed random maps with the shapes of a backbone's outputs for a
given image (VoVNet-39 at 800x1333 by default, padded to a multiple of 32 as
mmdet's data preprocessor does with ``pad_size_divisor=32``). Counts come from
:func:`vovdet.analysis.get_complexity` (FLOPs = multiply-adds; MAC = the
VoVNet paper's Eq. 1 summed over conv layers, in elements). Counting runs on
PyTorch's ``meta`` device, which propagates shapes without arithmetic, so a
full-resolution count costs no compute.

Latency is the wall-clock time of one forward pass of each neck alone (eval
mode, no gradients) on the CPU. The necks are timed side by side in one
process: after ``warmup`` untimed rounds, each of ``repeats`` rounds times
every neck once, in alternating order so that slow drifts of the machine hit
all necks alike; the median over rounds is reported with its ratio to the
first neck (FPN).
"""
import math
import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS

from ..models.backbones.vovnet import VoVNet
from .complexity import get_complexity

Shape = Tuple[int, int, int]
NECK_TYPES = {'FPN': 'FPN', 'OSA-FPN': 'OSAFPN', 'OSA-PAFPN': 'OSAPAFPN'}
GN32 = dict(type='GN', num_groups=32, requires_grad=True)
BACKBONE_STRIDES = (4, 8, 16, 32)


def vovnet_feature_shapes(arch: str = 'V-39',
                          image_shape: Tuple[int, int] = (800, 1333),
                          pad_size_divisor: int = 32) -> List[Shape]:
    """``(C, H, W)`` of the four VoVNet stage outputs for one image.

    Args:
        arch (str): A :class:`~vovdet.models.backbones.VoVNet` arch.
            Defaults to ``'V-39'``.
        image_shape (tuple[int, int]): Image height and width before
            padding. Defaults to (800, 1333).
        pad_size_divisor (int): The image is padded up to a multiple of it
            (mmdet's ``DetDataPreprocessor``); must be a multiple of 32 so
            that every stage halves exactly. Defaults to 32.

    Returns:
        list[tuple[int, int, int]]: Shapes at strides 4, 8, 16 and 32.
    """
    if arch not in VoVNet.arch_settings:
        raise ValueError(f"unknown VoVNet arch '{arch}'; choose one of "
                         f"{', '.join(VoVNet.arch_settings)}")
    if pad_size_divisor <= 0 or pad_size_divisor % 32:
        raise ValueError(f'pad_size_divisor must be a positive multiple of '
                         f'32, got {pad_size_divisor}')
    h, w = (math.ceil(s / pad_size_divisor) * pad_size_divisor
            for s in image_shape)
    channels = VoVNet.arch_settings[arch]['stage_out_channels']
    return [(c, h // s, w // s) for c, s in zip(channels, BACKBONE_STRIDES)]


def neck_configs(in_channels: Sequence[int],
                 out_channels: int = 256,
                 num_outs: int = 5,
                 norm_cfg: Optional[dict] = GN32,
                 osa_options: Optional[dict] = None) -> Dict[str, dict]:
    """Configs of the compared necks with the same shared arguments.

    Args:
        in_channels (Sequence[int]): Backbone channels per level.
        out_channels (int): Neck width. Defaults to 256.
        num_outs (int): Output levels. Defaults to 5 (Mask R-CNN).
        norm_cfg (dict, optional): Norm of every neck. Defaults to GN with
            32 groups, as in ``configs/vovnet39_maskrcnn_coco.py``.
        osa_options (dict, optional): Extra arguments of the two OSA necks
            (e.g. ``module_channels``); their defaults otherwise.

    Returns:
        dict[str, dict]: ``'FPN'``, ``'OSA-FPN'``, ``'OSA-PAFPN'`` configs.
    """
    common = dict(in_channels=list(in_channels), out_channels=out_channels,
                  num_outs=num_outs, norm_cfg=norm_cfg)
    configs = {}
    for name, neck_type in NECK_TYPES.items():
        extra = {} if neck_type == 'FPN' else dict(osa_options or {})
        configs[name] = dict(type=neck_type, **common, **extra)
    return configs


@dataclass
class NeckCost:
    """Cost of one neck on one set of feature maps.

    Attributes:
        name (str): Row label.
        params (int): Parameters.
        flops (int): Multiply-adds of one forward pass.
        mac (int): Memory access cost of its conv layers, in elements.
        latency_ms (float, optional): Median CPU latency, when measured.
        latency_ratio (float, optional): ``latency_ms`` over the first
            row's (FPN), when measured.
    """
    name: str
    params: int
    flops: int
    mac: int
    latency_ms: Optional[float] = None
    latency_ratio: Optional[float] = None

    @property
    def mac_per_flop(self) -> float:
        """MAC elements per multiply-add."""
        return self.mac / self.flops


def random_features(shapes: Sequence[Shape],
                    device: str = 'cpu',
                    seed: int = 0) -> Tuple[torch.Tensor, ...]:
    """Batch-1 random maps of the given ``(C, H, W)`` shapes."""
    generator = torch.Generator().manual_seed(seed)
    if device == 'meta':
        return tuple(torch.empty(1, *s, device='meta') for s in shapes)
    return tuple(
        torch.rand((1, *s), generator=generator).to(device) for s in shapes)


def count_neck(cfg: dict, shapes: Sequence[Shape], name: str = '') -> NeckCost:
    """Params, FLOPs and MAC of a neck config on maps of ``shapes``.

    The neck is built and run on the ``meta`` device: only shapes are
    propagated, so the count is free of arithmetic at any resolution.

    Args:
        cfg (dict): Neck config for mmdet's ``MODELS``.
        shapes (Sequence[tuple]): ``(C, H, W)`` of each input level.
        name (str): Row label. Defaults to the config's type.

    Returns:
        NeckCost: The counts (no latency).
    """
    with torch.device('meta'):
        neck = MODELS.build(cfg)
    result = get_complexity(neck, random_features(shapes, 'meta'))
    if result.uncounted:
        raise RuntimeError(f'{cfg["type"]} ran layers without a FLOP rule: '
                           f'{", ".join(result.uncounted)}')
    return NeckCost(name or cfg['type'], result.params, result.flops,
                    result.mac)


def time_necks(necks: Dict[str, nn.Module],
               feats: Sequence[torch.Tensor],
               repeats: int = 10,
               warmup: int = 2) -> Dict[str, List[float]]:
    """Time the forward pass of several necks side by side.

    Args:
        necks (dict[str, nn.Module]): The necks, by name.
        feats (Sequence[Tensor]): Their common input maps.
        repeats (int): Timed rounds; each times every neck once, the order
            reversed every other round. Defaults to 10.
        warmup (int): Untimed rounds first. Defaults to 2.

    Returns:
        dict[str, list[float]]: Seconds per call, ``repeats`` per neck.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got '
                         f'repeats={repeats}, warmup={warmup}')
    names = list(necks)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for neck in necks.values():
        neck.eval()
    with torch.no_grad():
        for _ in range(warmup):
            for name in names:
                necks[name](feats)
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                start = time.perf_counter()
                necks[name](feats)
                times[name].append(time.perf_counter() - start)
    return times


def benchmark_necks(configs: Dict[str, dict],
                    shapes: Sequence[Shape],
                    repeats: int = 10,
                    warmup: int = 2,
                    measure_latency: bool = True) -> List[NeckCost]:
    """Count and (optionally) time necks on the same input shapes.

    Args:
        configs (dict[str, dict]): Neck configs by row label; the first is
            the reference of the latency ratios (FPN).
        shapes (Sequence[tuple]): ``(C, H, W)`` of each input level.
        repeats (int): Timed rounds (see :func:`time_necks`).
        warmup (int): Untimed rounds.
        measure_latency (bool): Time the necks on the CPU. Defaults to True.

    Returns:
        list[NeckCost]: One row per config, in order.
    """
    rows = [count_neck(cfg, shapes, name) for name, cfg in configs.items()]
    if not measure_latency:
        return rows
    necks = {name: MODELS.build(cfg) for name, cfg in configs.items()}
    times = time_necks(necks, random_features(shapes), repeats, warmup)
    reference = statistics.median(times[rows[0].name])
    for row in rows:
        median = statistics.median(times[row.name])
        row.latency_ms = median * 1e3
        row.latency_ratio = median / reference
    return rows


def sweep_osa_settings(shapes: Sequence[Shape],
                       module_channels: Sequence[int],
                       layers_per_module: Sequence[int],
                       out_channels: int = 256,
                       num_outs: int = 5,
                       norm_cfg: Optional[dict] = GN32,
                       neck_type: str = 'OSAFPN') -> List[NeckCost]:
    """Counts of FPN and of an OSA neck over a grid of module settings.

    Args:
        shapes (Sequence[tuple]): ``(C, H, W)`` of each input level.
        module_channels (Sequence[int]): Widths to try.
        layers_per_module (Sequence[int]): Depths to try.
        out_channels (int): Neck width. Defaults to 256.
        num_outs (int): Output levels. Defaults to 5.
        norm_cfg (dict, optional): Norm config. Defaults to GN(32).
        neck_type (str): ``'OSAFPN'`` or ``'OSAPAFPN'``.

    Returns:
        list[NeckCost]: FPN first, then one row per (width, depth), labelled
        ``m=<width> n=<depth>``.
    """
    in_channels = [s[0] for s in shapes]
    common = dict(in_channels=in_channels, out_channels=out_channels,
                  num_outs=num_outs, norm_cfg=norm_cfg)
    rows = [count_neck(dict(type='FPN', **common), shapes, 'FPN')]
    for m in module_channels:
        for n in layers_per_module:
            cfg = dict(type=neck_type, module_channels=m,
                       layers_per_module=n, **common)
            rows.append(count_neck(cfg, shapes, f'm={m} n={n}'))
    return rows


def format_neck_table(rows: Sequence[NeckCost]) -> str:
    """Markdown table of :class:`NeckCost` rows; ratios are to the first."""
    ref = rows[0]
    timed = any(row.latency_ms is not None for row in rows)
    header = ['neck', 'params (M)', 'GMACs', 'MAC (M)', 'MAC per FLOP (1e-3)',
              f'MAC per FLOP / {ref.name}']
    if timed:
        header += ['latency (ms, median)', f'latency / {ref.name}']
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for row in rows:
        cells = [row.name, f'{row.params / 1e6:.3f}', f'{row.flops / 1e9:.2f}',
                 f'{row.mac / 1e6:.2f}', f'{row.mac_per_flop * 1e3:.4f}',
                 f'{row.mac_per_flop / ref.mac_per_flop:.3f}']
        if timed:
            cells += [f'{row.latency_ms:.1f}', f'{row.latency_ratio:.2f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
