"""The steps of the GPU suite (:mod:`vovdet.analysis.gpu_suite`).

Each step takes the run's :class:`~vovdet.analysis.gpu_suite.SuiteContext`
and returns a dict: ``summary`` (lines for the one-screen summary),
``tables`` (``TableResult`` by file stem, written by the runner), ``files``
(what it wrote itself) and any data for ``suite.json``. A step that cannot
run here raises :class:`StepSkipped`.
"""
import json
import os
import os.path as osp
from dataclasses import asdict, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .benchmark import (BenchmarkSettings, ModelSpec, build_spec_model,
                        paired_benchmark, prepare_model, run_paired_isolated,
                        time_in_turns)
from .complexity import get_complexity
from .gpu_suite_report import plot_bars
from .paper_table import TableEntry, TableResult, parse_entry, run_table

# RefineDet320 rows of the VoVNet paper's Table 4 (Titan X, batch 1):
# label, config, config overrides, paper FPS, paper J/img. ResNet-50 first:
# it is the base of the paired speed-ups.
TABLE4 = (
    ('ResNet-50', 'configs/resnet50_refinedet320_coco.py', None, 23.2, 5.3),
    ('VoVNet-39', 'configs/vovnet39_refinedet320_coco.py', None, 25.0, 4.8),
    ('DenseNet-201', 'configs/densenet201_refinedet320_coco.py', None, 12.0,
     9.9),
)
# The deeper rows of the same study, when time allows; ResNet-101 and
# DenseNet-161 swap the backbone of the ResNet-50 / DenseNet-201 configs
# (DenseNet-161's transition taps: 384, 1056 and 2208 channels).
TABLE4_MORE = (
    ('VoVNet-57', 'configs/vovnet57_refinedet320_coco.py', None),
    ('ResNet-101', 'configs/resnet50_refinedet320_coco.py',
     {'model.backbone.depth': 101}),
    ('DenseNet-161', 'configs/densenet201_refinedet320_coco.py', {
        'model.backbone.arch': '161',
        'model.neck.in_channels': (384, 1056, 2208),
        'model.bbox_head.in_channels': (384, 1056, 2208, 512)
    }),
)
TABLE4_VARIANTS = ((), ('fuse', ), ('fp16', ))
# Paper Table 5: Mask R-CNN inference time per image.
MASKRCNN = (
    ('VoVNet-39', 'configs/vovnet39_maskrcnn_coco.py', 152.0),
    ('ResNet-50', 'configs/resnet50_maskrcnn_coco.py', 157.0),
)
# score_thr 0 keeps max_per_img detections, so the mask head does the work
# it does with trained weights (random weights score below 0.05).
MASKRCNN_TEST = {'model.test_cfg.rcnn.score_thr': 0.0}
AMP_TRAIN = {'optim_wrapper.type': 'AmpOptimWrapper',
             'optim_wrapper.loss_scale': 'dynamic'}
BACKBONES = ('VoVNet-39', 'VoVNetV2-39', 'RepVGG-B1+deploy',
             'EfficientNet-B0', 'DenseNet-201', 'ResNet-50')
# timm's models of the same architectures (features_only: no classifier).
TIMM_TWINS = {
    'VoVNet-39': 'vovnet39a',
    'VoVNetV2-39': 'ese_vovnet39b',
    'RepVGG-B1+deploy': 'repvgg_b1',
    'EfficientNet-B0': 'efficientnet_b0',
    'DenseNet-201': 'densenet201',
    'ResNet-50': 'resnet50',
}


class StepSkipped(Exception):
    """A step cannot run here; the message says why."""


def _settings(ctx: Any, kind: str, **kwargs: Any) -> BenchmarkSettings:
    warmup, repeats = ctx.sizes.runs[kind]
    return BenchmarkSettings(warmup=warmup, repeats=repeats,
                             device=ctx.device, threads=ctx.threads,
                             **kwargs)


def _entry(ctx: Any, label: str, config: str, cfg_options: Optional[dict],
           variants: Tuple[str, ...] = ()) -> TableEntry:
    full = '+'.join((label, ) + tuple(variants))
    return TableEntry(
        ModelSpec(full, config=osp.join(ctx.root, config),
                  cfg_options=cfg_options), list(variants), label)


def _refinedet_table(ctx: Any, models: Tuple, title: str) -> TableResult:
    entries = [
        _entry(ctx, label, config, options, variants)
        for label, config, options, *_ in models
        for variants in TABLE4_VARIANTS
    ]
    settings = _settings(ctx, 'refinedet', part='detector',
                         shape=ctx.sizes.refinedet_shape)
    return run_table(entries, settings, title=title,
                     isolate=ctx.sizes.isolate, peak_kwargs=ctx.sizes.peak,
                     paired=ctx.sizes.paired)


def _energy(row: Any) -> str:
    if row.energy_j_per_img is None:
        return 'energy n/a'
    return f'{row.energy_j_per_img:.2f} J/img'


def _energy_note(table: TableResult) -> List[str]:
    """The reason energy is unavailable, once per table."""
    reasons = sorted({r.energy_reason for r in table.rows
                      if r.energy_j_per_img is None})
    return [f'energy: unavailable ({reason})' for reason in reasons]


def _model_lines(table: TableResult, paper: Dict[str, Tuple]) -> List[str]:
    """One line per plain model: FPS, memory, energy, GFLOP/s, the paired
    speed-ups of its folded and fp16 forms, and the paper's figures."""
    lines = []
    for i, row in enumerate(table.rows):
        if row.name != table.base_labels[i]:
            continue
        ups = []
        for j, other in enumerate(table.rows):
            if table.base_labels[j] == row.name and j != i:
                up = table.paired_speed_up(j) or table.speed_up(j)
                ups.append(f"{other.name.split('+', 1)[1]} "
                           + ('n/a' if up is None else f'{up:.2f}x'))
        gflops = ('n/a' if row.gflops_per_s is None else
                  f'{row.gflops_per_s:.0f} GFLOP/s')
        line = (f'{row.name}: {row.fps:.1f} FPS, {row.peak_memory_mb:.0f} '
                f'MiB, {_energy(row)}, {gflops}; {", ".join(ups)}')
        if row.name in paper:
            fps, joules = paper[row.name]
            line += f' (paper, Titan X: {fps} FPS, {joules} J/img)'
        lines.append(line)
    return lines + _energy_note(table)


def table4(ctx: Any) -> Dict[str, Any]:
    """Paper Table 4 on this device: RefineDet320 V-39 / R-50 / D-201."""
    table = _refinedet_table(ctx, TABLE4, 'RefineDet320 (paper Table 4): '
                             'plain, BN-folded, fp16 autocast')
    conv = table.conv_peak
    return dict(
        tables={'table4_refinedet320': table},
        summary=_model_lines(table, {m[0]: m[3:] for m in TABLE4}),
        conv_peak=None if conv is None else list(conv.conv))


def table4_more(ctx: Any) -> Dict[str, Any]:
    """VoVNet-57, ResNet-101 and DenseNet-161 RefineDet320."""
    table = _refinedet_table(ctx, TABLE4_MORE, 'RefineDet320, deeper '
                             'backbones: plain, BN-folded, fp16 autocast')
    return dict(tables={'table4_more_refinedet320': table},
                summary=_model_lines(table, {}))


def _write_json_md(ctx: Any, stem: str, data: Dict[str, Any],
                   markdown: str) -> List[str]:
    with open(osp.join(ctx.out_dir, f'{stem}.json'), 'w') as f:
        json.dump(data, f, indent=2)
    with open(osp.join(ctx.out_dir, f'{stem}.md'), 'w') as f:
        f.write(markdown)
    return [f'{stem}.json', f'{stem}.md']


def table4_vs_resnet50(ctx: Any) -> Dict[str, Any]:
    """The three plain detectors timed in turns in one process."""
    settings = _settings(ctx, 'refinedet', part='detector',
                         shape=ctx.sizes.refinedet_shape)
    specs = [(ModelSpec(label, config=osp.join(ctx.root, config)), settings)
             for label, config, *_ in TABLE4]
    done = ctx.results.get('table4')
    conv = done.data.get('conv_peak') if done and done.status == 'done' \
        else None
    run = run_paired_isolated if ctx.sizes.isolate else paired_benchmark
    paired = run(specs, None if conv is None else tuple(conv),
                 warmup=settings.warmup, rounds=settings.repeats)
    base, paper_base = TABLE4[0][0], TABLE4[0][3]
    rows = ['| model | speed vs ResNet-50 (paired) | paper FPS ratio '
            '(Titan X) | median latency (ms) |', '|---|---|---|---|']
    lines, measured, paper = [], [], []
    for label, _, _, fps, _ in TABLE4:
        up = 1.0 if label == base else paired.speed_ups[label]
        median = float(np.median(paired.latencies_ms[label]))
        rows.append(f'| {label} | {up:.2f}x | {fps / paper_base:.2f}x | '
                    f'{median:.2f} |')
        lines.append(f'{label}: {up:.2f}x ResNet-50 (paper '
                     f'{fps / paper_base:.2f}x)')
        measured.append(up)
        paper.append(fps / paper_base)
    markdown = '\n'.join(
        ['# RefineDet320 speed relative to ResNet-50, timed in turns', '',
         f'{settings.repeats} rounds after {settings.warmup} warm-up, one '
         f'process; medians of per-round ratios.', ''] + rows) + '\n'
    files = _write_json_md(ctx, 'table4_vs_resnet50', asdict(paired),
                           markdown)
    png = osp.join(ctx.out_dir, 'table4_vs_resnet50.png')
    plot_bars(png, 'RefineDet320 speed relative to ResNet-50',
              [m[0] for m in TABLE4],
              {'this device (paired)': measured, 'paper (Titan X)': paper})
    return dict(summary=lines, files=files + ['table4_vs_resnet50.png'],
                speed_ups=paired.speed_ups)


def _maskrcnn_table(ctx: Any, mode: str, cfg_options: Dict[str, Any],
                    title: str) -> TableResult:
    batch = ctx.sizes.train_batch if mode == 'train' else 1
    settings = _settings(ctx, 'train' if mode == 'train' else 'maskrcnn',
                         part='detector', mode=mode, batch=batch,
                         shape=ctx.sizes.maskrcnn_shape)
    entries = [_entry(ctx, label, config,
                      dict(cfg_options, **ctx.sizes.maskrcnn_options))
               for label, config, _ in MASKRCNN]
    return run_table(entries, settings, title=title,
                     isolate=ctx.sizes.isolate, peak_kwargs=ctx.sizes.peak,
                     paired=ctx.sizes.paired)


def maskrcnn_inference(ctx: Any) -> Dict[str, Any]:
    """Paper Table 5: Mask R-CNN (GN) inference time per image."""
    table = _maskrcnn_table(ctx, 'inference', MASKRCNN_TEST,
                            'Mask R-CNN (GN) inference (paper Table 5)')
    lines = [f'{row.name}: {row.latency_median_ms:.1f} ms/img, '
             f'{row.peak_memory_mb:.0f} MiB, {_energy(row)} (paper: '
             f'{paper:.0f} ms)'
             for row, (_, _, paper) in zip(table.rows, MASKRCNN)]
    lines += _energy_note(table)
    return dict(tables={'maskrcnn_inference': table}, summary=lines)


def _train_lines(table: TableResult) -> List[str]:
    return [f'{row.name}: {row.fps:.2f} images/s ({row.settings["batch"]} '
            f'per step, {row.latency_median_ms:.0f} ms/step), '
            f'{row.peak_memory_mb:.0f} MiB peak' for row in table.rows]


def maskrcnn_train_fp32(ctx: Any) -> Dict[str, Any]:
    """One Mask R-CNN training step (forward, loss, backward, SGD), fp32."""
    table = _maskrcnn_table(ctx, 'train', {}, 'Mask R-CNN (GN) training '
                            'step, fp32')
    return dict(tables={'maskrcnn_train_fp32': table},
                summary=_train_lines(table))


def maskrcnn_train_amp(ctx: Any) -> Dict[str, Any]:
    """The same step with mmengine's AmpOptimWrapper (fp16 autocast and a
    dynamic loss scale)."""
    if not ctx.device.startswith('cuda'):
        raise StepSkipped("AMP training needs CUDA: mmengine's "
                          'AmpOptimWrapper refuses the CPU')
    table = _maskrcnn_table(ctx, 'train', AMP_TRAIN,
                            'Mask R-CNN (GN) training step, AMP (fp16)')
    return dict(tables={'maskrcnn_train_amp': table},
                summary=_train_lines(table))


def backbone_table(shape: Tuple[int, int],
                   batch: int) -> Callable[[Any], Dict[str, Any]]:
    """The step timing :data:`BACKBONES` at ``shape`` and ``batch``."""

    def step(ctx: Any) -> Dict[str, Any]:
        settings = _settings(ctx, 'backbone', shape=shape, batch=batch)
        entries = [parse_entry(name, 'backbone') for name in BACKBONES]
        # in one process: rows differ by a model build, not a CUDA start
        table = run_table(entries, settings, title=f'Backbones at '
                          f'{shape[0]}x{shape[1]}, batch {batch}',
                          isolate=False, peak_kwargs=ctx.sizes.peak,
                          paired=ctx.sizes.paired)
        conv, gemm = table.conv_peak, table.gemm_peak
        fractions = []
        for i, row in enumerate(table.rows):
            # paired (timed in turns with the peak conv) where available
            fraction = table.paired_peak_fraction(i) or \
                row.gflops_per_s / conv.gflops_per_s
            fractions.append(f'{row.name} {fraction:.2f}')
        lines = [f'peaks: GEMM {gemm.gflops_per_s:.0f}, 3x3 conv '
                 f'{conv.gflops_per_s:.0f} GFLOP/s; fraction of the conv '
                 f'peak:', ', '.join(fractions)]
        return dict(tables={f'backbones_{shape[0]}x{shape[1]}_b{batch}':
                            table}, summary=lines)

    return step


def _timm_model(timm: Any, name: str) -> torch.nn.Module:
    model = timm.create_model(TIMM_TWINS[name], pretrained=False,
                              features_only=True)
    if name.endswith('+deploy'):
        from timm.utils.model import reparameterize_model
        model = reparameterize_model(model)
    return model.eval()


def backbones_vs_timm(ctx: Any) -> Dict[str, Any]:
    """Ours and timm's same architectures, timed in turns in one process
    at the first backbone shape, batch 1."""
    try:
        import timm
    except ImportError as err:
        raise StepSkipped(f'timm is not importable ({err})') from None
    shape = ctx.sizes.backbone_shapes[0]
    settings = _settings(ctx, 'backbone', shape=shape)
    device = settings.torch_device()
    calls, flops = {}, {}
    for name in BACKBONES:
        entry = parse_entry(name, 'backbone')
        model, _ = build_spec_model(entry.spec, 'backbone')
        prepared = prepare_model(
            model, replace(settings, deploy='deploy' in entry.variants),
            name)
        calls[name], flops[name] = prepared.call, prepared.flops
        twin = _timm_model(timm, name).to(device)
        image = torch.randn(1, 3, *shape, device=device)

        def call(m: torch.nn.Module = twin, x: torch.Tensor = image) -> Any:
            with torch.no_grad():
                return m(x)

        calls[f'timm {name}'] = call
        flops[f'timm {name}'] = get_complexity(twin, image).flops
    seconds = time_in_turns(calls, settings.warmup, settings.repeats, device)
    rows = ['| model | ours (ms) | timm (ms) | timm / ours | ours GFLOP/s '
            '| timm GFLOP/s |', '|---|---|---|---|---|---|']
    lines, data = [], {}
    for name in BACKBONES:
        ours = np.array(seconds[name])
        theirs = np.array(seconds[f'timm {name}'])
        ratio = float(np.median(theirs / ours))
        ours_ms, timm_ms = np.median(ours) * 1e3, np.median(theirs) * 1e3
        rate = [flops[k] / np.median(seconds[k]) / 1e9
                for k in (name, f'timm {name}')]
        rows.append(f'| {name} ({TIMM_TWINS[name]}) | {ours_ms:.2f} | '
                    f'{timm_ms:.2f} | {ratio:.2f} | {rate[0]:.0f} | '
                    f'{rate[1]:.0f} |')
        lines.append(f'{name}: timm {TIMM_TWINS[name]} takes {ratio:.2f}x '
                     f'our time')
        data[name] = dict(timm=TIMM_TWINS[name], ours_ms=ours_ms,
                          timm_ms=timm_ms, timm_over_ours=ratio,
                          ours_gflops_per_s=rate[0],
                          timm_gflops_per_s=rate[1])
    markdown = '\n'.join([
        f'# Backbones: ours vs timm at {shape[0]}x{shape[1]}, batch 1', '',
        f'timm {timm.__version__}, features_only models; timed in turns, '
        f'{settings.repeats} rounds.', ''
    ] + rows) + '\n'
    files = _write_json_md(ctx, 'backbones_vs_timm', data, markdown)
    return dict(summary=lines, files=files, models=data)


def onnx(ctx: Any) -> Dict[str, Any]:
    """The RefineDet and Mask R-CNN of ``ctx.sizes.onnx_configs`` (VoVNet-39
    on a GPU, the slim shapes detectors in the dry run) exported to ONNX
    with their post-processing, timed in turns with PyTorch (eager and inference form,
    on the suite's device) under every ONNX Runtime provider that runs here
    (CPU, CUDA, TensorRT; CPU for Mask R-CNN only in the dry run); the
    providers that cannot run are reported with the reason
    (:mod:`vovdet.analysis.deploy_benchmark`)."""
    from vovdet.deploy import MissingDeployDependency
    from vovdet.deploy.onnx import GPU_PROVIDERS, require

    from .deploy_benchmark import (DeployModel, format_timing,
                                   time_deploy_variants)
    try:
        require('onnx')
        require('onnxruntime')
    except MissingDeployDependency as err:
        raise StepSkipped(str(err)) from None
    warmup, repeats = ctx.sizes.runs['maskrcnn']
    cpu = ('CPUExecutionProvider', )
    # ONNX Runtime's CPU provider on Mask R-CNN at 800x1333 would take the
    # step's whole budget: only in the dry run, where it is all there is
    refinedet, mask_rcnn = ctx.sizes.onnx_configs
    models = (
        (DeployModel(osp.splitext(osp.basename(refinedet))[0],
                     osp.join(ctx.root, refinedet),
                     ctx.sizes.refinedet_shape), cpu + GPU_PROVIDERS),
        (DeployModel(osp.splitext(osp.basename(mask_rcnn))[0],
                     osp.join(ctx.root, mask_rcnn),
                     ctx.sizes.maskrcnn_shape,
                     dict(MASKRCNN_TEST, **ctx.sizes.maskrcnn_options)),
         GPU_PROVIDERS if ctx.device.startswith('cuda') else cpu +
         GPU_PROVIDERS),
    )
    work_dir = osp.join(ctx.out_dir, 'onnx')
    os.makedirs(work_dir, exist_ok=True)
    lines, data = [], {}
    for spec, providers in models:
        timing = time_deploy_variants(spec, work_dir, ctx.threads or 1,
                                      warmup, max(repeats, 1), ctx.device,
                                      providers)
        lines += format_timing(timing).splitlines()
        data[spec.label] = asdict(timing)
    markdown = '\n'.join(['# ONNX exports under ONNX Runtime', ''] +
                         [f'    {line}' for line in lines]) + '\n'
    files = _write_json_md(ctx, 'onnx', data, markdown)
    return dict(summary=lines, files=files, models=data)
