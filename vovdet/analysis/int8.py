"""INT8 of trained detectors: accuracy on the held-out split and latency,
against the float graph and PyTorch, in one process.

For each trained detector :func:`int8_study`

1. exports the float graph (:func:`~vovdet.deploy.export_onnx`),
2. quantizes it (:func:`~vovdet.deploy.quantize.quantize_onnx`, ranges
   calibrated on training images),
3. scores PyTorch eager, the float graph and the INT8 graph on the
   config's test set with the config's evaluator
   (:func:`~vovdet.deploy.evaluate.evaluate`: the same loop and images for
   all three),
4. times the three in turns on the first test image
   (:func:`~vovdet.analysis.benchmark.time_in_turns`; speed-ups are
   medians of per-round ratios), PyTorch and ONNX Runtime on the same
   number of intra-op threads.
"""
import copy
import inspect
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .benchmark import device_name, time_in_turns
from .deploy_benchmark import EAGER, _predict_call

FP32 = 'ONNX Runtime FP32'
INT8 = 'ONNX Runtime INT8'


@dataclass
class Int8Model:
    """A trained detector to quantize.

    Attributes:
        label (str): Name in the table.
        config (str): Config path.
        checkpoint (str): Trained checkpoint.
    """
    label: str
    config: str
    checkpoint: str


@dataclass
class Int8Result:
    """One detector's accuracy and latency as PyTorch, FP32 and INT8 graph.

    Attributes:
        label (str): The detector.
        checkpoint (str): Its checkpoint.
        shape (tuple[int, int]): Input ``(H, W)``.
        quantization (str): What :func:`~vovdet.deploy.quantize.
            quantize_onnx` did.
        metrics (dict[str, dict[str, float]]): The evaluator's metrics by
            variant.
        medians_ms (dict[str, float]): Median latency by variant.
        speed_ups (dict[str, float]): Median per-round ratio of the FP32
            graph's latency to each variant's.
        latencies_ms (dict[str, list[float]]): Per-round latency.
    """
    label: str
    checkpoint: str
    shape: tuple
    quantization: str
    metrics: Dict[str, Dict[str, float]]
    medians_ms: Dict[str, float]
    speed_ups: Dict[str, float]
    latencies_ms: Dict[str, List[float]] = field(default_factory=dict)


@dataclass
class Int8Study:
    """Every detector's result and the run's settings."""
    device: str
    threads: int
    warmup: int
    rounds: int
    calibration: str
    versions: Dict[str, str]
    models: List[Int8Result] = field(default_factory=list)


def int8_study(spec: Int8Model,
               work_dir: str,
               calibration_images: int = 64,
               method: str = 'MinMax',
               scheme: Optional[dict] = None,
               threads: int = 1,
               warmup: int = 2,
               rounds: int = 20,
               limit: Optional[int] = None,
               cfg_options: Optional[dict] = None,
               log: Callable[[str], None] = print) -> Int8Result:
    """Quantize, score and time one trained detector (module docstring).

    Args:
        spec (Int8Model): The detector.
        work_dir (str): Folder for the two graphs.
        calibration_images (int): Training images to calibrate on.
        method (str): Calibration method (:data:`~vovdet.deploy.quantize.
            CALIBRATION_METHODS`).
        scheme (dict, optional): Further arguments of
            :func:`~vovdet.deploy.quantize.quantize_onnx` (format,
            activation type, per-channel, ...); its defaults otherwise.
        threads (int): Intra-op threads of both runtimes.
        warmup (int): Untimed rounds.
        rounds (int): Timed rounds.
        limit (int, optional): Score only the first test images.
        cfg_options (dict, optional): Config overrides.
    """
    from vovdet.deploy import OnnxDetector, build_detector, export_onnx
    from vovdet.deploy.evaluate import (evaluate, onnx_predict,
                                        preprocessed_images, pytorch_predict)
    from vovdet.deploy.onnx import default_shape
    from vovdet.deploy.quantize import calibration_images as calibrate
    from vovdet.deploy.quantize import quantize_onnx

    torch.set_num_threads(threads)
    model, cfg = build_detector(spec.config, spec.checkpoint, cfg_options)
    shape = default_shape(cfg)
    stem = osp.join(work_dir, spec.label.replace(' ', '_'))
    export_onnx(copy.deepcopy(model), f'{stem}_fp32.onnx', shape,
                gpu_providers=False)
    quantized = quantize_onnx(
        f'{stem}_fp32.onnx', f'{stem}_int8.onnx',
        calibrate(cfg, model.data_preprocessor, calibration_images),
        method=method, **(scheme or {}))
    log(f'{spec.label}: {quantized}')
    runtimes = {FP32: OnnxDetector(f'{stem}_fp32.onnx', threads=threads),
                INT8: OnnxDetector(f'{stem}_int8.onnx', threads=threads)}
    predicts = {EAGER: pytorch_predict(model)}
    predicts.update({k: onnx_predict(v) for k, v in runtimes.items()})
    metrics = {}
    for name, predict in predicts.items():
        metrics[name] = {k: float(v) for k, v in evaluate(
            predict, cfg, model.data_preprocessor, limit).items()}
        log(f'  {name}: ' + ', '.join(
            f'{k} {v:.3f}' for k, v in metrics[name].items()
            if k.endswith(('_50', 'AP50'))))
    image, _ = next(preprocessed_images(cfg, model.data_preprocessor))
    if tuple(image.shape[-2:]) != tuple(shape):
        raise ValueError(f'the first test image is {tuple(image.shape[-2:])}'
                         f' after preprocessing, the graphs take {shape}')
    calls = {EAGER: _predict_call(model, image)}
    calls.update({k: partial(v, image) for k, v in runtimes.items()})
    seconds = time_in_turns(calls, warmup, rounds, torch.device('cpu'))
    base = np.array(seconds[FP32])
    return Int8Result(
        label=spec.label,
        checkpoint=spec.checkpoint,
        shape=tuple(shape),
        quantization=str(quantized),
        metrics=metrics,
        medians_ms={k: float(np.median(v)) * 1e3
                    for k, v in seconds.items()},
        speed_ups={k: float(np.median(base / np.array(v)))
                   for k, v in seconds.items() if k != FP32},
        latencies_ms={k: [t * 1e3 for t in v] for k, v in seconds.items()})


def run_int8_study(models: Sequence[Int8Model],
                   work_dir: str,
                   log: Callable[[str], None] = print,
                   **kwargs: Any) -> Int8Study:
    """:func:`int8_study` for every model, one after another, with the same
    ``kwargs`` (its arguments after ``work_dir``)."""
    settings = inspect.signature(int8_study).bind_partial(**kwargs)
    settings.apply_defaults()
    get = settings.arguments.get
    from vovdet.deploy.onnx import require
    ort = require('onnxruntime')
    os.makedirs(work_dir, exist_ok=True)
    study = Int8Study(
        device=device_name(torch.device('cpu')),
        threads=get('threads'),
        warmup=get('warmup'),
        rounds=get('rounds'),
        calibration=(f"{get('method')}, {get('calibration_images')} "
                     f'training images'),
        versions=dict(torch=torch.__version__, onnxruntime=ort.__version__))
    for spec in models:
        study.models.append(
            int8_study(spec, work_dir, log=log, **kwargs))
    return study


def _ap50_keys(result: Int8Result) -> List[str]:
    """The AP50 metrics of one detector's evaluator: COCO's
    ``bbox_mAP_50``/``segm_mAP_50``, VOC's ``AP50``."""
    return [k for k in result.metrics[EAGER]
            if k.endswith(('mAP_50', '/AP50'))]


def format_markdown(study: Int8Study) -> str:
    """The table of :func:`write_int8_study`: per detector and AP50 metric,
    the three variants' AP50 and INT8's change; per detector, latency and
    speed-up."""
    variants = (EAGER, FP32, INT8)
    header = ['detector', 'metric', 'AP50 PyTorch', 'AP50 FP32',
              'AP50 INT8', 'INT8 change'] + [f'{v} (ms)' for v in variants
                                             ] + ['INT8 vs FP32 speed-up']
    rows = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in study.models:
        for i, key in enumerate(_ap50_keys(r)):
            values = [r.metrics[v][key] for v in variants]
            cells = [f'{r.label} ({r.shape[0]}x{r.shape[1]})' if not i else
                     '', key.split('/')[-1]]
            cells += [f'{100 * x:.1f}' for x in values]
            cells.append(f'{100 * (values[2] - values[1]):+.1f}')
            cells += [f'{r.medians_ms[v]:.1f}' for v in variants] if not i \
                else [''] * len(variants)
            cells.append(f'{r.speed_ups[INT8]:.2f}x' if not i else '')
            rows.append('| ' + ' | '.join(cells) + ' |')
    versions = ', '.join(f'{k} {v}' for k, v in study.versions.items())
    notes = [f'- {r.label}: {r.quantization}' for r in study.models]
    return '\n'.join([
        f'# INT8 (ONNX Runtime static quantization) on {study.device}', '',
        f'AP50 (%) on the held-out split, scored by one loop for all three '
        f'variants; latency: batch 1, one preprocessed test image in, final '
        f'detections out, {study.threads} intra-op thread(s), '
        f'{study.warmup} warm-up + {study.rounds} rounds timed in turns '
        f'(speed-up: median of per-round FP32/INT8 ratios). Calibration: '
        f'{study.calibration}; {versions}.', ''
    ] + rows + [''] + notes) + '\n'


def load_int8_study(path: str) -> Int8Study:
    """An :class:`Int8Study` from its ``.json``."""
    with open(path) as f:
        data = json.load(f)
    models = [Int8Result(**dict(m, shape=tuple(m['shape'])))
              for m in data.pop('models')]
    return Int8Study(models=models, **data)


def write_int8_study(study: Int8Study, out_dir: str,
                     stem: str = 'int8_cpu') -> List[str]:
    """Write ``<stem>.json``, ``.md`` and ``.png`` (AP50 of each variant
    and the INT8 speed-up, per detector); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, f'{stem}.{ext}') for ext in
             ('json', 'md', 'png')]
    with open(paths[0], 'w') as f:
        json.dump(asdict(study), f, indent=1)
    with open(paths[1], 'w') as f:
        f.write(format_markdown(study))
    plot_int8_study(study, paths[2])
    return paths


def plot_int8_study(study: Int8Study, path: str) -> None:
    """Two panels per detector: AP50 of each variant (every AP50 metric of
    the evaluator) and median latency of each variant."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    variants = (EAGER, FP32, INT8)
    pairs = [(r, k) for r in study.models for k in _ap50_keys(r)]
    groups = ['\n'.join(r.label.rsplit(' ', 1) + [k.split('/')[-1]])
              for r, k in pairs]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(variants)
    for j, name in enumerate(variants):
        offset = (j - 1) * width
        aps = [100 * r.metrics[name][k] for r, k in pairs]
        axes[0].bar([i + offset for i in range(len(groups))], aps, width,
                    label=name)
        axes[1].bar([i + offset for i in range(len(study.models))],
                    [r.medians_ms[name] for r in study.models], width,
                    label=name)
    axes[0].set_xticks(range(len(groups)))
    axes[0].set_xticklabels(groups, fontsize=8)
    axes[0].set_ylabel('AP50 (%), held-out split')
    axes[1].set_xticks(range(len(study.models)))
    axes[1].set_xticklabels(['\n'.join(r.label.rsplit(' ', 1))
                             for r in study.models], fontsize=8)
    axes[1].set_ylabel(f'latency (ms), {study.threads} thread(s)')
    axes[0].legend(fontsize=8)
    fig.suptitle(f'INT8 static quantization (ONNX Runtime) on '
                 f'{study.device}')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[List[str]] = None) -> Any:
    import argparse
    from vovdet.apis.quantize_onnx import add_quantization_args
    parser = argparse.ArgumentParser(
        description='Quantize trained detectors to INT8 with ONNX Runtime '
        '(calibrated on training images) and compare AP50 on the held-out '
        'split and latency with the FP32 graph and PyTorch')
    parser.add_argument(
        '--model', nargs=3, action='append', required=True,
        metavar=('LABEL', 'CONFIG', 'CHECKPOINT'),
        help='a trained detector (repeat for several)')
    parser.add_argument('--calib-images', type=int, default=64,
                        help='training images to calibrate on (default 64)')
    add_quantization_args(parser)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--limit', type=int,
                        help='score only the first test images')
    parser.add_argument('--work-dir', default='work_dirs/int8',
                        help='folder for the ONNX graphs')
    parser.add_argument('--out', default='docs/results',
                        help='folder of the .json/.md/.png')
    parser.add_argument('--stem', default='int8_cpu')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Int8Study:
    """``tools/analysis/int8_benchmark.py``."""
    args = parse_args(argv)
    for label, config, checkpoint in args.model:
        for what, path in (('config', config), ('checkpoint', checkpoint)):
            if not osp.isfile(path):
                raise SystemExit(f"error: {label}: {what} '{path}' does not "
                                 f'exist')
    from vovdet.apis.quantize_onnx import quantization_kwargs
    study = run_int8_study(
        [Int8Model(*m) for m in args.model], args.work_dir,
        calibration_images=args.calib_images, method=args.method,
        scheme=quantization_kwargs(args), threads=args.threads,
        warmup=args.warmup, rounds=args.rounds, limit=args.limit)
    for path in write_int8_study(study, args.out, args.stem):
        print(f'wrote {path}')
    return study
