"""Side-by-side benchmarks in the layout of the VoVNet paper's Tables 2/4.

For a set of models (configs or bare backbones, each optionally with
inference transforms) this runs :mod:`vovdet.analysis.benchmark` once per
model, each in a fresh process, measures the machine's peak multiply-add
rate (a large fp32 GEMM and 3x3 convs), and writes

* ``NAME.md``: the table -- FLOPs, FPS, params, memory, energy, GFLOP/s
  (the paper's columns) plus latency median/p90, MAC, GFLOP/s as a
  fraction of the 3x3-conv peak and the speed-up of each transformed
  variant over its plain model;
* ``NAME.png``: latency vs FLOPs and energy vs FLOPs, one point per model,
  which shows at a glance whether FLOPs rank speed;
* ``NAME.json``: every measurement.

Models are named on the command line as

* a config path, e.g. ``configs/vovnet39_maskrcnn_coco.py``;
* a backbone from :data:`BACKBONE_SPECS`, e.g. ``VoVNet-39``;
* or a backbone spec ``Type:key=value,...``, e.g.
  ``VoVNet:arch=V-27-slim,out_indices=(3,)`` (values are Python literals,
  anything else is a string);

each followed by any of ``+deploy``, ``+fuse`` (fold BN into convs) and
``+channels-last`` and ``+fp16`` (inference under float16 autocast), e.g.
``RepVGG-B1+deploy+fuse``.
"""
import ast
import datetime
import json
import os
import os.path as osp
import re
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .benchmark import (BenchmarkResult, BenchmarkSettings, ModelSpec,
                        PairedResult, benchmark_spec, device_name,
                        paired_benchmark, reference_conv3x3, run_isolated,
                        run_paired_isolated, time_in_turns)

# Named backbones (mmdet MODELS configs). ResNets are mmdet's; the rest are
# vovdet's. All output the four stages (strides 4-32) a detector uses.
BACKBONE_SPECS: Dict[str, Dict[str, Any]] = {
    'VoVNet-27-slim': dict(type='VoVNet', arch='V-27-slim'),
    'VoVNet-39': dict(type='VoVNet', arch='V-39'),
    'VoVNet-57': dict(type='VoVNet', arch='V-57'),
    'VoVNetV2-19-slim-dw': dict(type='VoVNet', arch='V2-19-slim-dw'),
    'VoVNetV2-19': dict(type='VoVNet', arch='V2-19'),
    'VoVNetV2-39': dict(type='VoVNet', arch='V2-39'),
    'VoVNetV2-57': dict(type='VoVNet', arch='V2-57'),
    'VoVNetV2-99': dict(type='VoVNet', arch='V2-99'),
    'ResNet-50': dict(type='ResNet', depth=50),
    'ResNet-101': dict(type='ResNet', depth=101),
    'DenseNet-121': dict(type='DenseNet', arch='121'),
    'DenseNet-161': dict(type='DenseNet', arch='161'),
    'DenseNet-201': dict(type='DenseNet', arch='201'),
    'RepVGG-A0': dict(type='RepVGG', arch='A0'),
    'RepVGG-B1': dict(type='RepVGG', arch='B1'),
    'EfficientNet-B0': dict(type='VoVDetEfficientNet', arch='b0'),
    'EfficientNet-B3': dict(type='VoVDetEfficientNet', arch='b3'),
}

# Suffix -> BenchmarkSettings field it switches on.
VARIANTS = {
    'deploy': 'deploy',
    'fuse': 'fuse_conv_bn',
    'channels-last': 'channels_last',
    'fp16': 'amp',
}

# Split "k=v,k=v" at the commas that start a new key, so that values such
# as (0, 1) keep theirs.
_KEY_SPLIT = re.compile(r',(?=\s*[A-Za-z_][\w.]*=)')


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_backbone_spec(text: str) -> Dict[str, Any]:
    """``'Type:k=v,...'`` or a :data:`BACKBONE_SPECS` name -> config dict.

    Dotted keys (``norm_cfg.type=GN``) build nested dicts.
    """
    if text in BACKBONE_SPECS:
        return dict(BACKBONE_SPECS[text])
    type_name, _, args = text.partition(':')
    if not type_name.isidentifier():
        raise ValueError(
            f"backbone '{text}' is neither a named backbone "
            f"({', '.join(BACKBONE_SPECS)}) nor 'Type:key=value,...'")
    cfg: Dict[str, Any] = dict(type=type_name)
    for item in _KEY_SPLIT.split(args) if args else []:
        key, eq, value = item.partition('=')
        if not eq:
            raise ValueError(f"backbone '{text}': '{item}' is not key=value")
        *parents, leaf = key.strip().split('.')
        target = cfg
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _literal(value.strip())
    return cfg


@dataclass
class TableEntry:
    """One row to measure.

    Attributes:
        spec (ModelSpec): The model.
        variants (list[str]): Transforms from :data:`VARIANTS`.
        base_label (str): Label of the same model without transforms.
    """
    spec: ModelSpec
    variants: List[str] = field(default_factory=list)
    base_label: str = ''


def parse_entry(text: str,
                kind: str,
                cfg_options: Optional[Dict[str, Any]] = None) -> TableEntry:
    """Parse ``MODEL[+variant...]`` (see the module docstring).

    Args:
        text (str): The entry.
        kind (str): ``'config'`` or ``'backbone'``.
        cfg_options (dict, optional): Overrides for configs.

    Returns:
        TableEntry: The parsed entry; its label is ``text`` with a config
        path shortened to the file's stem.
    """
    base, *variants = text.split('+')
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"'{text}': unknown variant(s) {unknown}; choose "
                         f"from +{', +'.join(VARIANTS)}")
    if kind == 'config':
        if not osp.isfile(base):
            raise FileNotFoundError(f"config '{base}' does not exist")
        base_label = osp.splitext(osp.basename(base))[0]
        spec = ModelSpec(base_label, config=base, cfg_options=cfg_options)
    elif kind == 'backbone':
        base_label = base
        spec = ModelSpec(base_label, backbone=parse_backbone_spec(base))
    else:
        raise ValueError(f"unknown kind '{kind}'; choose config or backbone")
    spec.label = '+'.join([base_label] + variants)
    return TableEntry(spec, variants, base_label)


@dataclass
class PeakResult:
    """Throughput of one reference operation.

    Attributes:
        name (str): What was run.
        flops (int): Multiply-adds per call.
        latency_ms (float): Median time per call.
        gflops_per_s (float): flops / latency / 1e9.
        conv (tuple[int, int, bool], optional): ``(channels, size,
            channels_last)`` of a 3x3 conv; None for the GEMM.
    """
    name: str
    flops: int
    latency_ms: float
    gflops_per_s: float
    conv: Optional[Tuple[int, int, bool]] = None


def _median_seconds(fn: Callable[[], Any], warmup: int, repeats: int,
                    device: torch.device) -> float:
    return float(np.median(
        time_in_turns({'op': fn}, warmup, repeats, device)['op']))


def measure_peak(device: torch.device,
                 gemm_size: int = 2048,
                 conv_shapes: Sequence[Tuple[int, int]] = ((128, 128),
                                                           (256, 64),
                                                           (512, 32)),
                 warmup: int = 3,
                 repeats: int = 10) -> List[PeakResult]:
    """Measured multiply-add rate of a GEMM and of 3x3 convs.

    The convs are stride-1 ``c -> c`` 3x3 convs on a batch-1 ``s x s`` map
    (by default the shapes of VoVNet-39's OSA layers at a 512 px input:
    128 channels at 128 px, ...), each run in the NCHW and the NHWC memory
    format. Their best rate is the "3x3-conv peak" efficiencies are
    compared with.

    Args:
        device (torch.device): Where to run.
        gemm_size (int): n of the n x n x n fp32 matrix product.
        conv_shapes (Sequence[tuple[int, int]]): ``(channels, size)`` pairs.
        warmup (int): Untimed calls.
        repeats (int): Timed calls (median taken).

    Returns:
        list[PeakResult]: The GEMM, then every conv and memory format.
    """
    gen = torch.Generator().manual_seed(0)
    results = []
    with torch.no_grad():
        a = torch.randn(gemm_size, gemm_size, generator=gen).to(device)
        b = torch.randn(gemm_size, gemm_size, generator=gen).to(device)
        seconds = _median_seconds(partial(torch.mm, a, b), warmup, repeats,
                                  device)
        flops = gemm_size**3
        results.append(
            PeakResult(f'GEMM {gemm_size}x{gemm_size}x{gemm_size}', flops,
                       seconds * 1e3, flops / seconds / 1e9))
        del a, b
        for channels, size in conv_shapes:
            for channels_last in (False, True):
                call, flops, name = reference_conv3x3(
                    channels, size, channels_last, device, gen)
                seconds = _median_seconds(call, warmup, repeats, device)
                results.append(
                    PeakResult(name, flops, seconds * 1e3,
                               flops / seconds / 1e9,
                               conv=(channels, size, channels_last)))
    return results


@dataclass
class TableResult:
    """Everything a table shows.

    Attributes:
        title (str): Table heading.
        settings (dict): The shared :class:`BenchmarkSettings`.
        device_name (str): CPU model or GPU name.
        threads (int): Torch threads.
        torch_version (str): ``torch.__version__``.
        date (str): UTC time of the run.
        peaks (list[PeakResult]): Reference-operation rates.
        rows (list[BenchmarkResult]): One per entry.
        base_labels (list[str]): Each row's untransformed model.
        isolated (bool): Every model ran in a fresh process.
        paired (list[PairedResult]): Each model with its transformed
            variants and the 3x3-conv peak timed in turns in one process
            (:func:`~vovdet.analysis.benchmark.paired_benchmark`): the
            noise-robust source of the speed-ups and peak fractions.
    """
    title: str
    settings: Dict[str, Any]
    device_name: str
    threads: int
    torch_version: str
    date: str
    peaks: List[PeakResult]
    rows: List[BenchmarkResult]
    base_labels: List[str]
    isolated: bool = True
    paired: List[PairedResult] = field(default_factory=list)

    @property
    def conv_peak(self) -> Optional[PeakResult]:
        """The fastest 3x3 conv."""
        convs = [p for p in self.peaks if p.name.startswith('conv3x3')]
        return max(convs, key=lambda p: p.gflops_per_s) if convs else None

    @property
    def gemm_peak(self) -> Optional[PeakResult]:
        """The GEMM."""
        gemms = [p for p in self.peaks if p.name.startswith('GEMM')]
        return gemms[0] if gemms else None

    def _paired(self, label: str) -> Optional[PairedResult]:
        for paired in self.paired:
            if label in paired.labels:
                return paired
        return None

    def paired_speed_up(self, index: int) -> Optional[float]:
        """Median over turns of the plain model's latency / the row's,
        both timed in turns in one process; None for a plain row or when
        the plain model is not in the table."""
        label = self.rows[index].name
        paired = self._paired(label)
        return None if paired is None else paired.speed_ups.get(label)

    def paired_peak_fraction(self, index: int) -> Optional[float]:
        """Median over turns of the row's GFLOP/s / the 3x3-conv peak's
        timed in the same turn."""
        label = self.rows[index].name
        paired = self._paired(label)
        return None if paired is None else paired.peak_fractions.get(label)

    def speed_up(self, index: int) -> Optional[float]:
        """Median latency of the row's plain model / the row's, if both
        are in the table and the row is a transformed variant (runs made
        one after the other; see :meth:`paired_speed_up`)."""
        row = self.rows[index]
        base = self.base_labels[index]
        if row.name == base:
            return None
        for other in self.rows:
            if other.name == base:
                return other.latency_median_ms / row.latency_median_ms
        return None

    def to_dict(self) -> Dict[str, Any]:
        """Plain-container form (JSON-serialisable)."""
        data = asdict(self)
        data['speed_ups'] = [self.speed_up(i) for i in range(len(self.rows))]
        data['paired_speed_ups'] = [
            self.paired_speed_up(i) for i in range(len(self.rows))
        ]
        data['paired_peak_fractions'] = [
            self.paired_peak_fraction(i) for i in range(len(self.rows))
        ]
        return data


def run_table(entries: Sequence[TableEntry],
              settings: BenchmarkSettings,
              title: str = 'Benchmark',
              isolate: bool = True,
              peak_kwargs: Optional[Dict[str, Any]] = None,
              paired: bool = True) -> TableResult:
    """Benchmark every entry and measure the machine's peak.

    Each entry is first measured on its own (latency, memory, energy).
    Then, for inference, each model is timed once more in turns with its
    transformed variants and the fastest 3x3 conv of the peak measurement,
    in one process: the speed-ups and peak fractions are ratios of calls
    made seconds apart, which a machine's slow spells cannot skew.

    Args:
        entries (Sequence[TableEntry]): The rows; each row's variants are
            switched on in its copy of ``settings``.
        settings (BenchmarkSettings): Shared settings.
        title (str): Table heading.
        isolate (bool): Run every model in a fresh process
            (:func:`run_isolated`). Defaults to True.
        peak_kwargs (dict, optional): Arguments of :func:`measure_peak`.
        paired (bool): Also time every model with its variants and the
            conv peak in turns. Defaults to True.

    Returns:
        TableResult: The measurements.
    """
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = settings.torch_device()
    rows = []
    for entry in entries:
        row_settings = replace(
            settings, **{VARIANTS[v]: True for v in entry.variants})
        if isolate:
            rows.append(run_isolated(entry.spec, row_settings))
        else:
            rows.append(benchmark_spec(entry.spec, row_settings))
    peaks = measure_peak(device, **(peak_kwargs or {}))
    paired_results = []
    if paired and settings.mode == 'inference':
        conv = max((p for p in peaks if p.conv is not None),
                   key=lambda p: p.gflops_per_s, default=None)
        groups: Dict[str, List[Tuple[ModelSpec, BenchmarkSettings]]] = {}
        for entry in entries:
            groups.setdefault(entry.base_label, []).append(
                (entry.spec, replace(
                    settings, **{VARIANTS[v]: True for v in entry.variants})))
        run = run_paired_isolated if isolate else paired_benchmark
        for group in groups.values():
            paired_results.append(
                run(group, None if conv is None else tuple(conv.conv),
                    warmup=settings.warmup, rounds=settings.repeats))
    return TableResult(
        title=title,
        settings=asdict(settings),
        device_name=device_name(device),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        peaks=peaks,
        rows=rows,
        base_labels=[e.base_label for e in entries],
        isolated=isolate,
        paired=paired_results)


def _num(value: Optional[float], pattern: str) -> str:
    return 'n/a' if value is None else pattern.format(value)


def format_markdown(table: TableResult) -> str:
    """The table as markdown (paper Tables 2/4 columns first)."""
    s = table.settings
    h, w = s['shape']
    conv_peak, gemm_peak = table.conv_peak, table.gemm_peak
    isolation = (', each model in its own process'
                 if table.isolated else ', all models in one process')
    lines = [
        f'# {table.title}',
        '',
        f"{s['part'].capitalize()} {s['mode']}, batch {s['batch']} x 3 x "
        f"{h} x {w}, {s['warmup']} warm-up + {s['repeats']} timed calls per "
        f'model{isolation}. {table.device_name}, threads: '
        f'{table.threads}, torch {table.torch_version}, '
        f'{table.date}.',
        '',
        'FLOPs are multiply-adds per image and GFLOP/s multiply-adds per '
        'second (the papers\' convention, half of a vendor\'s FLOP/s); '
        'energy per image is the energy of the timed calls / images; '
        'memory is the peak over warm-up and timed calls '
        f'({table.rows[0].memory_source if table.rows else "n/a"}).',
        '',
    ]
    if table.paired:
        peak_name = table.paired[0].peak_name or 'no reference conv'
        lines += [
            '"eff. / 3×3-conv peak" and "speed-up" are paired: each model '
            'was timed again, one call at a time in turns with its '
            f'transformed variants and the reference conv ({peak_name}), '
            'in one process, and the figures are medians over turns of '
            'per-turn ratios, so slow spells of the machine cancel. '
            'Latency and FPS are from the separate runs.',
            '',
        ]
    lines += [
        '| Model | FLOPs (G) | FPS | #Param (M) | Memory (MB) | Energy '
        '(J/img) | Comp. eff. (GFLOP/s) | eff. / 3×3-conv peak | latency '
        'median / p90 (ms) | MAC (M/batch) | speed-up |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    reasons = []
    for i, row in enumerate(table.rows):
        batch = row.settings['batch']
        flops = None if row.flops is None else row.flops / batch / 1e9
        # weights are read once per call, so MAC is not per image
        mac = None if row.mac is None else row.mac / 1e6
        fraction = table.paired_peak_fraction(i)
        if fraction is None and row.gflops_per_s is not None and \
                conv_peak is not None:
            fraction = row.gflops_per_s / conv_peak.gflops_per_s
        energy = _num(row.energy_j_per_img, '{:.3f}')
        if row.energy_j_per_img is None:
            if row.energy_reason not in reasons:
                reasons.append(row.energy_reason)
            energy = f'n/a [{reasons.index(row.energy_reason) + 1}]'
        speed_up = table.paired_speed_up(i)
        if speed_up is None:
            speed_up = table.speed_up(i)
        lines.append(
            f'| {row.name} | {_num(flops, "{:.2f}")} | {row.fps:.2f} | '
            f'{row.params / 1e6:.2f} | {row.peak_memory_mb:.0f} | {energy} | '
            f'{_num(row.gflops_per_s, "{:.1f}")} | '
            f'{_num(fraction, "{:.2f}")} | {row.latency_median_ms:.1f} / '
            f'{row.latency_p90_ms:.1f} | {_num(mac, "{:.1f}")} | '
            f'{"—" if speed_up is None else f"{speed_up:.2f}×"} |')
    lines.append('')
    for k, reason in enumerate(reasons):
        lines.append(f'[{k + 1}] energy unavailable: {reason}')
    if reasons:
        lines.append('')
    lines += [
        '**Machine peak** (multiply-adds per second; "eff. / 3×3-conv peak" '
        'divides by the best conv):',
        '',
        '| reference operation | GFLOP/s | median (ms) |',
        '|---|---|---|',
    ]
    for peak in table.peaks:
        best = ' (3×3-conv peak)' if peak is conv_peak else ''
        lines.append(f'| {peak.name}{best} | {peak.gflops_per_s:.1f} | '
                     f'{peak.latency_ms:.2f} |')
    if gemm_peak is not None and conv_peak is not None:
        lines += [
            '',
            f'The best 3×3 conv reaches '
            f'{conv_peak.gflops_per_s / gemm_peak.gflops_per_s:.2f} of the '
            f'GEMM rate.'
        ]
    return '\n'.join(lines) + '\n'


def plot_table(table: TableResult, path: str) -> None:
    """Latency vs FLOPs and energy vs FLOPs, one labelled point per row.

    Args:
        table (TableResult): The measurements.
        path (str): PNG to write.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_energy) = plt.subplots(1, 2, figsize=(12, 5))
    rows = [r for r in table.rows if r.flops is not None]
    if not rows:  # train mode: backward FLOPs are not counted
        for ax in (ax_lat, ax_energy):
            ax.text(0.5, 0.5, 'no FLOPs counted (train mode)', ha='center',
                    va='center', transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    batch = table.settings['batch']
    flops = [r.flops / batch / 1e9 for r in rows]
    latency = [r.latency_median_ms / batch for r in rows]
    ax_lat.scatter(flops, latency)
    for x, y, r in zip(flops, latency, rows):
        ax_lat.annotate(r.name, (x, y), textcoords='offset points',
                        xytext=(4, 4), fontsize=8)
    ax_lat.set_xlabel('FLOPs per image (G multiply-adds)')
    ax_lat.set_ylabel('latency per image (ms, median)')
    ax_lat.set_title('latency vs FLOPs')
    measured = [(x, r) for x, r in zip(flops, rows)
                if r.energy_j_per_img is not None]
    if measured:
        xs = [x for x, _ in measured]
        ys = [r.energy_j_per_img for _, r in measured]
        ax_energy.scatter(xs, ys, color='tab:red')
        for x, y, (_, r) in zip(xs, ys, measured):
            ax_energy.annotate(r.name, (x, y), textcoords='offset points',
                               xytext=(4, 4), fontsize=8)
        ax_energy.set_ylabel('energy per image (J)')
    elif rows:
        ax_energy.text(0.5, 0.5,
                       'energy unavailable:\n' + _wrap(rows[0].energy_reason),
                       ha='center', va='center', fontsize=9,
                       transform=ax_energy.transAxes)
        ax_energy.set_xticks([])
        ax_energy.set_yticks([])
    ax_energy.set_xlabel('FLOPs per image (G multiply-adds)')
    ax_energy.set_title('energy vs FLOPs')
    fig.suptitle(f'{table.title} ({table.device_name}, threads: '
                 f'{table.threads})', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _wrap(text: str, width: int = 60) -> str:
    words, lines, line = text.split(), [], ''
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f'{line} {word}'.strip()
    return '\n'.join(lines + [line])


def write_table(table: TableResult, out_dir: str,
                name: str) -> Dict[str, str]:
    """Write ``NAME.md``, ``NAME.png`` and ``NAME.json`` into ``out_dir``.

    Returns:
        dict: Paths by kind (``markdown``, ``png``, ``json``).
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        kind: osp.join(out_dir, f'{name}.{ext}')
        for kind, ext in (('markdown', 'md'), ('png', 'png'), ('json',
                                                              'json'))
    }
    with open(paths['markdown'], 'w') as f:
        f.write(format_markdown(table))
    plot_table(table, paths['png'])
    with open(paths['json'], 'w') as f:
        json.dump(table.to_dict(), f, indent=2)
    return paths
