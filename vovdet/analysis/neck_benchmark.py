"""FPN and PAFPN vs OSA-FPN and OSA-PAFPN: params, FLOPs, MAC, CPU latency.

The necks are fed random maps with the shapes of a backbone's outputs for a
given image (VoVNet-39 at 800x1333 by default, padded to a multiple of 32 as
mmdet's data preprocessor does with ``pad_size_divisor=32``). Counts come from
:func:`vovdet.analysis.get_complexity` (FLOPs = multiply-adds; MAC = the
VoVNet paper's Eq. 1 summed over conv layers, in elements). Counting runs on
PyTorch's ``meta`` device, which propagates shapes without arithmetic, so a
full-resolution count costs no compute.

Every neck is compared with its mmdet counterpart, its *reference*: OSA-FPN
rows with ``FPN``, OSA-PAFPN rows with ``PAFPN`` (:data:`REFERENCE_TYPES`).

Latency is the wall-clock time of one forward pass of each neck alone (eval
mode, no gradients) on the CPU. The necks are timed side by side in one
process: after ``warmup`` untimed rounds, each of ``repeats`` rounds times
every neck once, in alternating order so that slow drifts of the machine hit
all necks alike. A neck's latency ratio is *paired*: the median over rounds
of its time divided by its reference's time in the same round (with the
quartiles of those per-round ratios), so the load of a shared machine,
which changes from round to round, cancels.

With ``inference_form`` every neck is first turned into its inference form
(:func:`vovdet.deploy.to_inference_form`: RepVGG branches fused, BatchNorm
folded into the convs), the form a deployed detector runs; this needs
BatchNorm necks (GroupNorm cannot be folded).
"""
import json
import math
import os
import os.path as osp
import statistics
import textwrap
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS

from ..deploy.inference_form import to_inference_form
from ..models.backbones.vovnet import VoVNet
from .complexity import get_complexity

Shape = Tuple[int, int, int]
NECK_TYPES = {
    'FPN': 'FPN',
    'PAFPN': 'PAFPN',
    'OSA-FPN': 'OSAFPN',
    'OSA-PAFPN': 'OSAPAFPN'
}
# The mmdet neck each neck type is compared with.
REFERENCE_TYPES = {
    'FPN': 'FPN',
    'OSAFPN': 'FPN',
    'PAFPN': 'PAFPN',
    'OSAPAFPN': 'PAFPN'
}
# docs/necks.md: the default OSA necks may cost at most this much of their
# reference's paired latency (issue 14).
LATENCY_TARGET = 1.10
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
                 osa_options: Optional[dict] = None,
                 variants: Optional[Dict[str, dict]] = None
                 ) -> Dict[str, dict]:
    """Configs of the compared necks with the same shared arguments.

    Args:
        in_channels (Sequence[int]): Backbone channels per level.
        out_channels (int): Neck width. Defaults to 256.
        num_outs (int): Output levels. Defaults to 5 (Mask R-CNN).
        norm_cfg (dict, optional): Norm of every neck. Defaults to GN with
            32 groups, as in ``configs/vovnet39_maskrcnn_coco.py``.
        osa_options (dict, optional): Extra arguments of the two default OSA
            rows (e.g. ``layers_per_module``); their defaults otherwise.
        variants (dict[str, dict], optional): Further rows, label to OSA
            neck arguments; ``type`` picks ``'OSAFPN'`` (the default) or
            ``'OSAPAFPN'``, and a ``norm_cfg`` replaces the shared one.

    Returns:
        dict[str, dict]: ``'FPN'``, ``'PAFPN'``, ``'OSA-FPN'``,
        ``'OSA-PAFPN'`` and the variants' configs, in that order.
    """
    common = dict(in_channels=list(in_channels), out_channels=out_channels,
                  num_outs=num_outs, norm_cfg=norm_cfg)
    configs = {}
    for name, neck_type in NECK_TYPES.items():
        extra = {} if neck_type in ('FPN', 'PAFPN') else dict(
            osa_options or {})
        configs[name] = dict(common, type=neck_type, **extra)
    for label, options in (variants or {}).items():
        if label in configs:
            raise ValueError(f"variant label '{label}' is already a row; "
                             f"choose another")
        options = dict(options)
        neck_type = options.pop('type', 'OSAFPN')
        if neck_type not in ('OSAFPN', 'OSAPAFPN'):
            raise ValueError(f"variant '{label}': type must be OSAFPN or "
                             f"OSAPAFPN, got '{neck_type}'")
        configs[label] = dict(common, type=neck_type, **options)
    return configs


@dataclass
class NeckCost:
    """Cost of one neck on one set of feature maps.

    Attributes:
        name (str): Row label.
        type (str): Registry type of the neck.
        params (int): Parameters.
        flops (int): Multiply-adds of one forward pass.
        mac (int): Memory access cost of its conv layers, in elements.
        reference (str): Label of the row it is compared with (itself for
            a reference).
        flops_ratio (float): ``flops`` over the reference's.
        mac_per_flop_ratio (float): MAC per FLOP over the reference's.
        latency_ms (float, optional): Median CPU latency, when measured.
        latency_ratio (float, optional): Paired latency over the
            reference's: the median over rounds of the per-round ratio.
        latency_ratio_quartiles (tuple[float, float], optional): First and
            third quartiles of the per-round ratios.
    """
    name: str
    type: str
    params: int
    flops: int
    mac: int
    reference: str = ''
    flops_ratio: float = 1.0
    mac_per_flop_ratio: float = 1.0
    latency_ms: Optional[float] = None
    latency_ratio: Optional[float] = None
    latency_ratio_quartiles: Optional[Tuple[float, float]] = None

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


def build_neck(cfg: dict, inference_form: bool = False,
               device: Optional[str] = None) -> nn.Module:
    """Build a neck in eval mode, optionally in its inference form.

    Args:
        cfg (dict): Neck config for mmdet's ``MODELS``.
        inference_form (bool): Fuse RepVGG branches and fold BatchNorms
            (:func:`~vovdet.deploy.to_inference_form`); on a real device the
            output is checked against the unconverted neck on small maps.
        device (str, optional): ``'meta'`` builds without memory.

    Returns:
        nn.Module: The neck.
    """
    with torch.device(device or 'cpu'):
        neck = MODELS.build(cfg).eval()
    if inference_form:
        check = None
        if device != 'meta':
            # levels of 16, 8, 4, 2 px: PAFPN-type necks need exact halving
            small = random_features([(c, 16 >> i, 16 >> i) for i, c in
                                     enumerate(cfg['in_channels'])])
            check = lambda m: m(small)  # noqa: E731
        to_inference_form(neck, check=check, name=cfg['type'])
    return neck


def count_neck(cfg: dict,
               shapes: Sequence[Shape],
               name: str = '',
               inference_form: bool = False) -> NeckCost:
    """Params, FLOPs and MAC of a neck config on maps of ``shapes``.

    The neck is built and run on the ``meta`` device: only shapes are
    propagated, so the count is free of arithmetic at any resolution.

    Args:
        cfg (dict): Neck config for mmdet's ``MODELS``.
        shapes (Sequence[tuple]): ``(C, H, W)`` of each input level.
        name (str): Row label. Defaults to the config's type.
        inference_form (bool): Count the inference form (see
            :func:`build_neck`).

    Returns:
        NeckCost: The counts (no latency, no ratios).
    """
    neck = build_neck(cfg, inference_form, device='meta')
    result = get_complexity(neck, random_features(shapes, 'meta'))
    if result.uncounted:
        raise RuntimeError(f'{cfg["type"]} ran layers without a FLOP rule: '
                           f'{", ".join(result.uncounted)}')
    return NeckCost(name or cfg['type'], cfg['type'], result.params,
                    result.flops, result.mac)


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
        dict[str, list[float]]: Seconds per call, ``repeats`` per neck, in
        round order.
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


def _quartiles(values: Sequence[float]) -> Tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    return q1, q3


def set_references(rows: List[NeckCost]) -> List[NeckCost]:
    """Give every row its reference (the first row of the mmdet type in
    :data:`REFERENCE_TYPES`, else the first row) and its count ratios."""
    first_of_type: Dict[str, NeckCost] = {}
    for row in rows:
        first_of_type.setdefault(row.type, row)
    for row in rows:
        ref = first_of_type.get(REFERENCE_TYPES.get(row.type), rows[0])
        row.reference = ref.name
        row.flops_ratio = row.flops / ref.flops
        row.mac_per_flop_ratio = row.mac_per_flop / ref.mac_per_flop
    return rows


def benchmark_necks(configs: Dict[str, dict],
                    shapes: Sequence[Shape],
                    repeats: int = 10,
                    warmup: int = 2,
                    measure_latency: bool = True,
                    inference_form: bool = False) -> List[NeckCost]:
    """Count and (optionally) time necks on the same input shapes.

    Args:
        configs (dict[str, dict]): Neck configs by row label.
        shapes (Sequence[tuple]): ``(C, H, W)`` of each input level.
        repeats (int): Timed rounds (see :func:`time_necks`).
        warmup (int): Untimed rounds.
        measure_latency (bool): Time the necks on the CPU. Defaults to True.
        inference_form (bool): Count and time the inference forms (see
            :func:`build_neck`). Defaults to False.

    Returns:
        list[NeckCost]: One row per config, in order, with its reference
        and ratios (see :func:`set_references`).
    """
    rows = set_references([
        count_neck(cfg, shapes, name, inference_form)
        for name, cfg in configs.items()
    ])
    if not measure_latency:
        return rows
    necks = {name: build_neck(cfg, inference_form)
             for name, cfg in configs.items()}
    times = time_necks(necks, random_features(shapes), repeats, warmup)
    for row in rows:
        ratios = [t / r for t, r in zip(times[row.name],
                                        times[row.reference])]
        row.latency_ms = statistics.median(times[row.name]) * 1e3
        row.latency_ratio = statistics.median(ratios)
        row.latency_ratio_quartiles = _quartiles(ratios)
    return rows


def sweep_osa_settings(shapes: Sequence[Shape],
                       module_channels: Sequence[int],
                       layers_per_module: Sequence[int],
                       out_channels: int = 256,
                       num_outs: int = 5,
                       norm_cfg: Optional[dict] = GN32,
                       neck_type: str = 'OSAFPN',
                       expand_ratio: Optional[float] = None
                       ) -> List[NeckCost]:
    """Counts of an OSA neck over a grid of module settings, with its
    reference (``FPN`` or ``PAFPN``) first.

    Args:
        shapes (Sequence[tuple]): ``(C, H, W)`` of each input level.
        module_channels (Sequence[int]): Widths of the 3x3 layers to try.
        layers_per_module (Sequence[int]): Depths to try.
        out_channels (int): Neck width. Defaults to 256.
        num_outs (int): Output levels. Defaults to 5.
        norm_cfg (dict, optional): Norm config. Defaults to GN(32).
        neck_type (str): ``'OSAFPN'`` or ``'OSAPAFPN'``.
        expand_ratio (float, optional): The necks' ``expand_ratio``.
            Defaults to None: the neck's default.

    Returns:
        list[NeckCost]: The reference first, then one row per
        (width, depth), labelled ``m=<width> n=<depth>``.
    """
    in_channels = [s[0] for s in shapes]
    common = dict(in_channels=in_channels, out_channels=out_channels,
                  num_outs=num_outs, norm_cfg=norm_cfg)
    reference = REFERENCE_TYPES[neck_type]
    rows = [count_neck(dict(type=reference, **common), shapes, reference)]
    for m in module_channels:
        for n in layers_per_module:
            cfg = dict(type=neck_type, module_channels=m,
                       layers_per_module=n, **common)
            if expand_ratio is not None:
                cfg['expand_ratio'] = expand_ratio
            rows.append(count_neck(cfg, shapes, f'm={m} n={n}'))
    return set_references(rows)


def format_neck_table(rows: Sequence[NeckCost]) -> str:
    """Markdown table of :class:`NeckCost` rows, ratios to each row's
    reference."""
    timed = any(row.latency_ms is not None for row in rows)
    header = ['neck', 'params (M)', 'GMACs', 'GMACs / ref', 'MAC (M)',
              'MAC per FLOP (1e-3)', 'MAC per FLOP / ref']
    if timed:
        header += ['latency (ms, median)', 'latency / ref (paired median)',
                   'quartiles']
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for row in rows:
        ref = f' {row.reference}' if row.reference != row.name else ''
        cells = [row.name, f'{row.params / 1e6:.3f}', f'{row.flops / 1e9:.2f}',
                 f'{row.flops_ratio:.2f}x{ref}', f'{row.mac / 1e6:.2f}',
                 f'{row.mac_per_flop * 1e3:.4f}',
                 f'{row.mac_per_flop_ratio:.2f}x{ref}']
        if timed:
            q1, q3 = row.latency_ratio_quartiles
            cells += [f'{row.latency_ms:.1f}',
                      f'**{row.latency_ratio:.2f}x{ref}**',
                      f'{q1:.2f}-{q3:.2f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_neck_costs(rows: Sequence[NeckCost], path: str,
                    title: str = '') -> None:
    """Bar chart of each neck's paired latency over its reference's (or,
    untimed, its FLOPs ratio), with the :data:`LATENCY_TARGET` line."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    timed = all(row.latency_ratio is not None for row in rows)
    values = [row.latency_ratio if timed else row.flops_ratio
              for row in rows]
    colors = ['tab:gray' if row.reference == row.name else
              'tab:blue' if REFERENCE_TYPES.get(row.type) == 'FPN' else
              'tab:orange' for row in rows]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    y = range(len(rows))[::-1]
    ax.barh(list(y), values, color=colors)
    if timed:
        for yi, row in zip(y, rows):
            q1, q3 = row.latency_ratio_quartiles
            ax.plot([q1, q3], [yi, yi], color='black', linewidth=1)
    for yi, row, value in zip(y, rows, values):
        right = max(value, row.latency_ratio_quartiles[1]) if timed \
            else value
        ax.text(right + 0.02, yi, f'{value:.2f}x {row.reference}, '
                f'{row.flops_ratio:.2f}x GMACs', va='center', fontsize=7)
    ax.axvline(1.0, color='black', linewidth=0.8)
    ax.axvline(LATENCY_TARGET, color='red', linestyle='--', linewidth=0.8,
               label=f'target {LATENCY_TARGET:.2f}x')
    ax.set_yticks(list(y))
    ax.set_yticklabels([row.name for row in rows], fontsize=8)
    ax.set_xlim(0, max(values + [LATENCY_TARGET]) * 1.45)
    ax.set_xlabel('paired CPU latency / reference (bars: median, lines: '
                  'quartiles)' if timed else 'GMACs / reference')
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_neck_report(rows: Sequence[NeckCost], out_dir: str,
                      name: str = 'necks',
                      title: str = '') -> Dict[str, str]:
    """Write ``<name>.md`` (the table), ``<name>.json`` (the rows) and
    ``<name>.png`` (:func:`plot_neck_costs`) under ``out_dir``; return the
    paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: osp.join(out_dir, f'{name}.{ext}')
             for ext in ('md', 'json', 'png')}
    with open(paths['md'], 'w') as f:
        f.write((f'{title}\n\n' if title else '') + format_neck_table(rows) +
                '\n')
    with open(paths['json'], 'w') as f:
        json.dump([asdict(row) for row in rows], f, indent=1)
    plot_neck_costs(rows, paths['png'], title)
    return paths
