"""Deployment latency: PyTorch eager vs PyTorch inference form vs ONNX
Runtime, per detector, timed in turns in one process.

Each detector is built once (seeded, ``init_weights``, BatchNorm statistics
set from one random image by :func:`settle_batch_norm`: at initialisation
the running statistics are 0/1, activations grow through a deep backbone
and the softmax saturates into tied scores, which a trained detector does
not give); three callables then do the same work, one preprocessed image
in, final detections out:

* ``PyTorch eager``: the training-form detector's ``predict`` (mmdet's
  post-processing);
* ``PyTorch inference form``: the same after
  :func:`~vovdet.deploy.to_inference_form` (RepVGG fused, BN folded);
* ``ONNX Runtime``: the graph of :func:`~vovdet.deploy.export_onnx`
  (post-processing in the graph) under the CPU execution provider, and
  ``ONNX Runtime CUDA`` / ``ONNX Runtime Tensorrt`` under those providers
  when asked for and able to run (else the reason is recorded).

They are timed one call each in turns (:func:`~vovdet.analysis.benchmark.
time_in_turns`), so a slow spell of a shared machine slows all alike, and
the speed-ups are medians of per-round ratios, as
:func:`~vovdet.analysis.benchmark.paired_benchmark`. PyTorch and ONNX
Runtime get the same number of intra-op threads. The detections of every
variant are compared with the eager ones
(:func:`~vovdet.deploy.onnx.compare_detections`) before timing.
"""
import copy
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from .benchmark import device_name, time_in_turns

EAGER = 'PyTorch eager'
FORM = 'PyTorch inference form'
ORT = 'ONNX Runtime'


@dataclass
class DeployModel:
    """A detector to time.

    Attributes:
        label (str): Name in the table.
        config (str): Config path.
        shape (tuple[int, int]): Input ``(H, W)``.
        cfg_options (dict, optional): Overrides merged into the config.
    """
    label: str
    config: str
    shape: Tuple[int, int]
    cfg_options: Optional[Dict[str, Any]] = None


# The shapes detectors the tests export, the RepVGG swap of the demo, and
# the paper-size RefineDet320 / DSOD300.
DEFAULT_MODELS = (
    DeployModel('RefineDet192 VoVNetV2-19-slim',
                'configs/vovnet19slim_refinedet192_shapes.py', (192, 192)),
    DeployModel('DSOD160 VoVNet-27-slim',
                'configs/vovnet27slim_dsod160_shapes.py', (160, 160)),
    DeployModel('Mask R-CNN VoVNetV2-19-slim',
                'configs/vovnet19slim_maskrcnn_shapes.py', (192, 192)),
    DeployModel('RefineDet320 VoVNet-39',
                'configs/vovnet39_refinedet320_coco.py', (320, 320)),
    DeployModel('DSOD300 VoVNet-27-slim',
                'configs/vovnet27slim_dsod300_voc07.py', (300, 300)),
)


@dataclass
class DeployTiming:
    """One detector's paired timings.

    Attributes:
        label (str): The model.
        shape (tuple[int, int]): Input ``(H, W)``.
        latencies_ms (dict[str, list[float]]): Per-round latency by variant.
        medians_ms (dict[str, float]): Median latency by variant.
        speed_ups (dict[str, float]): Median over rounds of eager latency /
            the variant's.
        parity (dict[str, str]): Each variant's detections against eager's.
        detections (int): Eager detections on the timed image.
        inference_form (str): What the inference form did.
        not_run (dict[str, str]): Execution providers asked for that could
            not run, with the reason.
    """
    label: str
    shape: Tuple[int, int]
    latencies_ms: Dict[str, List[float]]
    medians_ms: Dict[str, float]
    speed_ups: Dict[str, float]
    parity: Dict[str, str]
    detections: int
    inference_form: str
    not_run: Dict[str, str] = field(default_factory=dict)


@dataclass
class DeployBenchmark:
    """Every detector's timings and the run's settings."""
    device: str
    threads: int
    warmup: int
    rounds: int
    versions: Dict[str, str]
    models: List[DeployTiming] = field(default_factory=list)


def settle_batch_norm(model: torch.nn.Module, images: torch.Tensor) -> int:
    """Set every BatchNorm's running statistics to its batch statistics on
    ``images`` (at least two: a 1x1 map of one image has no variance), by
    the network's tensor-mode forward (``extract_feat`` for a two-stage
    detector); returns how many were set."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one pass sets them
    model.train()
    with torch.no_grad():
        if hasattr(model, 'rpn_head'):
            model.extract_feat(images)
        else:
            model(images, mode='tensor')
    model.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return len(norms)


def _predict_call(model: torch.nn.Module, image: torch.Tensor
                  ) -> Callable[[], Dict[str, torch.Tensor]]:
    """``model.predict`` on one preprocessed image, as a callable returning
    the detections."""
    from mmdet.structures import DetDataSample
    size = tuple(image.shape[-2:])
    meta = dict(img_shape=size, ori_shape=size, pad_shape=size,
                batch_input_shape=size, scale_factor=(1.0, 1.0))

    def call() -> Dict[str, torch.Tensor]:
        sample = DetDataSample(metainfo=meta)
        with torch.no_grad():
            pred = model.predict(image, [sample])[0].pred_instances
        out = dict(boxes=pred.bboxes, scores=pred.scores,
                   labels=pred.labels)
        if 'masks' in pred:
            out['masks'] = pred.masks
        return out

    return call


def _provider_label(provider: str) -> str:
    name = provider.replace('ExecutionProvider', '')
    return ORT if name == 'CPU' else f'{ORT} {name}'


@dataclass
class Variants:
    """A detector's variants, ready to time (:func:`prepare_variants`)."""
    calls: Dict[str, Callable[[], Any]]
    parity: Dict[str, str]
    detections: int
    inference_form: str
    not_run: Dict[str, str]


def prepare_variants(spec: DeployModel,
                     work_dir: str,
                     threads: int = 1,
                     device: str = 'cpu',
                     providers: Sequence[str] = ('CPUExecutionProvider', ),
                     seed: int = 0) -> Variants:
    """Build ``spec``, export it (on the CPU) and make the callables of its
    variants: PyTorch on ``device``, ONNX Runtime under each provider that
    runs (the others are recorded in ``not_run``)."""
    from vovdet.deploy import OnnxDetector, build_detector, export_onnx
    from vovdet.deploy.onnx import (compare_detections, example_image,
                                    try_provider)

    torch.manual_seed(seed)
    eager, _ = build_detector(spec.config, cfg_options=spec.cfg_options)
    eager.init_weights()
    settle_batch_norm(
        eager,
        torch.cat([example_image(spec.shape, seed=seed + k) for k in (2, 3)]))
    form = copy.deepcopy(eager)
    path = osp.join(work_dir, f'{spec.label.replace(" ", "_")}.onnx')
    result = export_onnx(form, path, spec.shape, gpu_providers=False)
    image = example_image(spec.shape, seed=seed + 1)
    on_device = image.to(device)
    calls = {EAGER: _predict_call(eager.to(device), on_device),
             FORM: _predict_call(form.to(device), on_device)}
    not_run = {}
    for provider in providers:
        reason = try_provider(path, image, provider)
        if reason is not None:
            not_run[provider] = reason
            continue
        runtime = OnnxDetector(path, [provider], threads=threads)
        calls[_provider_label(provider)] = partial(runtime, image)
    reference = calls[EAGER]()
    parity = {name: str(compare_detections(reference, call()))
              for name, call in calls.items() if name != EAGER}
    return Variants(calls, parity, len(reference['scores']),
                    result.inference_form, not_run)


def time_deploy_variants(spec: DeployModel,
                         work_dir: str,
                         threads: int = 1,
                         warmup: int = 2,
                         rounds: int = 10,
                         device: str = 'cpu',
                         providers: Sequence[str] = (
                             'CPUExecutionProvider', )) -> DeployTiming:
    """Time one detector's variants in turns (see the module docstring)."""
    torch.set_num_threads(threads)
    variants = prepare_variants(spec, work_dir, threads, device, providers)
    seconds = time_in_turns(variants.calls, warmup, rounds,
                            torch.device(device))
    eager = np.array(seconds[EAGER])
    return DeployTiming(
        label=spec.label,
        shape=tuple(spec.shape),
        latencies_ms={k: [t * 1e3 for t in v]
                      for k, v in seconds.items()},
        medians_ms={k: float(np.median(v)) * 1e3
                    for k, v in seconds.items()},
        speed_ups={k: float(np.median(eager / np.array(v)))
                   for k, v in seconds.items() if k != EAGER},
        parity=variants.parity,
        detections=variants.detections,
        inference_form=variants.inference_form,
        not_run=variants.not_run)


def run_deploy_benchmark(models: Sequence[DeployModel],
                         work_dir: str,
                         threads: int = 1,
                         warmup: int = 2,
                         rounds: int = 10,
                         log: Callable[[str], None] = print
                         ) -> DeployBenchmark:
    """:func:`time_deploy_variants` for every model (one after another in
    this process)."""
    from vovdet.deploy.onnx import require
    ort = require('onnxruntime')
    os.makedirs(work_dir, exist_ok=True)
    bench = DeployBenchmark(
        device=device_name(torch.device('cpu')),
        threads=threads,
        warmup=warmup,
        rounds=rounds,
        versions=dict(torch=torch.__version__, onnxruntime=ort.__version__))
    for spec in models:
        timing = time_deploy_variants(spec, work_dir, threads, warmup,
                                      rounds)
        log(format_timing(timing))
        bench.models.append(timing)
    return bench


def format_timing(timing: DeployTiming) -> str:
    """One line per variant: median latency and speed-up over eager."""
    lines = [f'{timing.label} at {timing.shape[0]}x{timing.shape[1]} '
             f'({timing.detections} detections)']
    for name, median in timing.medians_ms.items():
        gain = timing.speed_ups.get(name)
        lines.append(f'  {name}: {median:.1f} ms' + (
            '' if gain is None else f', {gain:.2f}x eager'))
    lines += [f'  could not run under {provider}: {reason}'
              for provider, reason in timing.not_run.items()]
    return '\n'.join(lines)


def format_markdown(bench: DeployBenchmark) -> str:
    """The table of :func:`write_deploy_benchmark`."""
    variants = list(bench.models[0].medians_ms) if bench.models else []
    header = ['detector', 'input'] + [f'{v} (ms)' for v in variants] + [
        f'{v} speed-up' for v in variants[1:]]
    rows = ['| ' + ' | '.join(header) + ' |',
            '|' + '---|' * len(header)]
    for m in bench.models:
        cells = [m.label, f'{m.shape[0]}x{m.shape[1]}']
        cells += [f'{m.medians_ms[v]:.1f}' for v in variants]
        cells += [f'{m.speed_ups[v]:.2f}x' for v in variants[1:]]
        rows.append('| ' + ' | '.join(cells) + ' |')
    versions = ', '.join(f'{k} {v}' for k, v in bench.versions.items())
    parity = [f'- {m.label}, {name}: {text}' for m in bench.models
              for name, text in m.parity.items()]
    return '\n'.join([
        f'# Deployment latency on {bench.device}', '',
        f'{bench.threads} intra-op thread(s) for PyTorch and ONNX Runtime; '
        f'batch 1, one preprocessed image in, final detections out; '
        f'{bench.warmup} warm-up + {bench.rounds} rounds timed in turns '
        f'(speed-up: median over rounds of eager latency / the variant\'s); '
        f'{versions}. Seeded, untrained weights: every detector returns its '
        f'maximum number of detections, the most post-processing work.', ''
    ] + rows + ['', 'Detections of each variant against eager on the timed '
                'image:', ''] + parity) + '\n'


def load_deploy_benchmark(path: str) -> DeployBenchmark:
    """A :class:`DeployBenchmark` from its ``.json``."""
    with open(path) as f:
        data = json.load(f)
    models = [DeployTiming(**dict(m, shape=tuple(m['shape'])))
              for m in data.pop('models')]
    return DeployBenchmark(models=models, **data)


def write_deploy_benchmark(bench: DeployBenchmark, out_dir: str,
                           stem: str = 'deploy_cpu') -> List[str]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` (speed-ups
    over eager, per detector); returns the paths."""
    from .gpu_suite_report import plot_bars
    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, f'{stem}.{ext}') for ext in
             ('json', 'md', 'png')]
    with open(paths[0], 'w') as f:
        json.dump(asdict(bench), f, indent=1)
    with open(paths[1], 'w') as f:
        f.write(format_markdown(bench))
    variants = [v for v in bench.models[0].speed_ups] if bench.models else []
    plot_bars(
        paths[2],
        f'Speed-up over PyTorch eager, {bench.threads} thread(s), batch 1',
        ['\n'.join(m.label.rsplit(' ', 1)) for m in bench.models],
        {v: [m.speed_ups[v] for m in bench.models] for v in variants})
    return paths
