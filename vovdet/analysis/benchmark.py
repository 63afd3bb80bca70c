"""Latency, throughput, peak memory, compute efficiency and energy.

What is measured (the VoVNet paper's Tables 2 and 4, Sec. 4; definitions in
``paper_specs.md`` §7):

* **latency**: wall-clock time of one call (one batch) after ``warmup``
  untimed calls; the median and the 90th percentile of ``repeats`` timed
  calls are reported, and **FPS** = batch / median latency. On CUDA the
  device is synchronised around every call.
* **peak memory**: on CUDA the allocator's ``max_memory_allocated`` (reset
  before the warm-up); on CPU the process's peak resident set size
  (``VmHWM``), reset through ``/proc/self/clear_refs`` before the warm-up
  when the kernel allows it, else the peak since the process started. It
  includes the weights and the libraries, like the paper's "Memory (MB)".
* **compute efficiency**: the papers' "GFLOP/s" = multiply-adds of one
  batch (counted by :func:`vovdet.analysis.get_complexity` on exactly the
  call that is timed) / median latency. One FLOP is one multiply-add here,
  as in the papers' FLOPs columns, i.e. half of a hardware vendor's FLOP/s.
* **energy per image** (Eq. 2 of the paper: average power / FPS), from
  NVML power samples every ``power_interval`` seconds on NVIDIA GPUs (the
  paper sampled ``nvidia-smi`` every 100 ms) or from the Linux RAPL package
  energy counters (``/sys/class/powercap/intel-rapl:<n>/energy_uj``) on
  CPUs, integrated over the timed calls and divided by the images they
  processed. When neither is readable the result says ``unavailable`` and
  why; no number is ever estimated. RAPL counts the whole CPU package, so
  other processes' work is included: measure on a quiet machine.

Inference-time transforms are :mod:`vovdet.deploy`'s inference form:
``deploy`` calls ``switch_to_deploy()`` of the modules that have one
(RepVGG's structural re-parameterisation; a model without one is refused),
``fuse_conv_bn`` folds every BatchNorm that directly follows a conv into it
(mmcv's ``fuse_conv_bn``), ``channels_last`` converts weights and inputs to
the NHWC memory format. Transformed models are checked against the original
on the benchmark input before anything is timed.
"""
import copy
import json
import math
import os
import os.path as osp
import re
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from vovdet.deploy import to_inference_form

from .complexity import build_model_from_config, get_complexity

RAPL_ROOT = '/sys/class/powercap'
PARTS = ('backbone', 'detector')
MODES = ('inference', 'train')
# Package-level RAPL zones are intel-rapl:<n>; intel-rapl:<n>:<m> are their
# sub-zones (core, uncore, dram) and intel-rapl-mmio:<n> a second interface
# to the same package counter, so both would double count.
_PACKAGE_ZONE = re.compile(r'^intel-rapl:\d+$')
_RESULT_MARKER = 'VOVDET_BENCHMARK_RESULT '


class EnergyUnavailable(RuntimeError):
    """No energy sensor can be read; the message says why."""


def rapl_delta_uj(start: int, end: int, max_range_uj: int) -> int:
    """Energy between two readings of a RAPL counter, in micro-joules.

    The counter runs from 0 to ``max_energy_range_uj`` and then restarts at
    0; a reading smaller than the previous one means it wrapped once (the
    sampling interval is far shorter than a full range).

    Args:
        start (int): Earlier ``energy_uj`` reading.
        end (int): Later ``energy_uj`` reading.
        max_range_uj (int): The zone's ``max_energy_range_uj``.

    Returns:
        int: Micro-joules consumed between the two readings.
    """
    if end >= start:
        return end - start
    return max_range_uj - start + end


@dataclass
class RaplZone:
    """One readable RAPL package zone.

    Attributes:
        name (str): The zone's ``name`` (e.g. ``package-0``).
        energy_file (str): Path of its ``energy_uj`` counter.
        max_range_uj (int): Its ``max_energy_range_uj``.
    """
    name: str
    energy_file: str
    max_range_uj: int

    def read(self) -> int:
        """Current counter value in micro-joules."""
        with open(self.energy_file) as f:
            return int(f.read())


def find_rapl_zones(root: str = RAPL_ROOT) -> List[RaplZone]:
    """The package-level RAPL zones under a powercap sysfs root.

    Args:
        root (str): The powercap class folder. Defaults to
            ``/sys/class/powercap``.

    Returns:
        list[RaplZone]: One zone per CPU package, all readable.

    Raises:
        EnergyUnavailable: No package zone exists or one cannot be read;
            the message names the file and the fix.
    """
    if not osp.isdir(root):
        raise EnergyUnavailable(
            f'{root} does not exist: no Linux powercap/RAPL driver (not '
            f'Linux, a CPU without RAPL, or a VM/container that hides it)')
    entries = sorted(e for e in os.listdir(root) if _PACKAGE_ZONE.match(e))
    if not entries:
        raise EnergyUnavailable(
            f'no intel-rapl:<n> package zone under {root} (RAPL driver not '
            f'loaded: try `modprobe intel_rapl_common`)')
    zones = []
    for entry in entries:
        folder = osp.join(root, entry)
        name_file = osp.join(folder, 'name')
        name = entry
        if osp.isfile(name_file):
            with open(name_file) as f:
                name = f.read().strip()
        if name == 'psys':  # platform zone: already includes the packages
            continue
        energy_file = osp.join(folder, 'energy_uj')
        try:
            with open(osp.join(folder, 'max_energy_range_uj')) as f:
                max_range = int(f.read())
            zone = RaplZone(name, energy_file, max_range)
            zone.read()
        except PermissionError:
            raise EnergyUnavailable(
                f'{energy_file} is not readable by this user (root-only '
                f'since Linux 5.10): run as root or make it readable, e.g. '
                f'`sudo chmod a+r {energy_file}`') from None
        except (OSError, ValueError) as err:
            raise EnergyUnavailable(
                f'cannot read RAPL zone {folder}: '
                f'{type(err).__name__}: {err}') from None
        zones.append(zone)
    if not zones:
        raise EnergyUnavailable(f'{root} has only a psys zone, no package '
                                f'zone')
    return zones


class RaplMeter:
    """Accumulates the energy of RAPL package zones across wrap-arounds.

    Args:
        zones (list[RaplZone]): Zones to sum, from :func:`find_rapl_zones`.
    """
    source = 'rapl'

    def __init__(self, zones: List[RaplZone]) -> None:
        self.zones = zones
        self._last: List[int] = []
        self._total_uj = 0

    def start(self) -> None:
        """Take the reference reading."""
        self._last = [zone.read() for zone in self.zones]
        self._total_uj = 0

    def poll(self) -> None:
        """Add the energy since the previous reading."""
        for i, zone in enumerate(self.zones):
            now = zone.read()
            self._total_uj += rapl_delta_uj(self._last[i], now,
                                            zone.max_range_uj)
            self._last[i] = now

    def joules(self, elapsed: float) -> float:
        """Energy since :meth:`start` (``elapsed`` is not needed)."""
        return self._total_uj / 1e6


class NvmlMeter:
    """Samples an NVIDIA GPU's board power through NVML (``pynvml``).

    Args:
        device (torch.device): The CUDA device being benchmarked.
    """
    source = 'nvml'

    def __init__(self, device: torch.device) -> None:
        try:
            import pynvml
        except ImportError:
            raise EnergyUnavailable(
                'pynvml is not installed (pip install nvidia-ml-py)') from None
        self._nvml = pynvml
        index = device.index if device.index is not None else \
            torch.cuda.current_device()
        try:
            pynvml.nvmlInit()
            props = torch.cuda.get_device_properties(index)
            # NVML numbers GPUs ignoring CUDA_VISIBLE_DEVICES; the PCI
            # address names the same board in both.
            if hasattr(props, 'pci_bus_id'):
                address = (f'{props.pci_domain_id:04x}:{props.pci_bus_id:02x}'
                           f':{props.pci_device_id:02x}.0')
                self._handle = pynvml.nvmlDeviceGetHandleByPciBusId(
                    address.encode())
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetPowerUsage(self._handle)
        except pynvml.NVMLError as err:
            raise EnergyUnavailable(
                f'NVML cannot read the power of cuda:{index}: {err}') from None
        self._samples: List[float] = []

    def start(self) -> None:
        """Take the first power sample."""
        self._samples = []
        self.poll()

    def poll(self) -> None:
        """Record the current power in watts."""
        milliwatts = self._nvml.nvmlDeviceGetPowerUsage(self._handle)
        self._samples.append(milliwatts / 1000.0)

    def joules(self, elapsed: float) -> float:
        """Average sampled power times the elapsed time."""
        return float(np.mean(self._samples)) * elapsed


@dataclass
class EnergyReading:
    """Energy over a measured window.

    Attributes:
        joules (float, optional): Energy in J; None when unavailable.
        average_power_w (float, optional): joules / window length.
        source (str): ``'nvml'``, ``'rapl'`` or ``'unavailable'``.
        reason (str): Why the energy is unavailable ('' otherwise).
    """
    joules: Optional[float]
    average_power_w: Optional[float]
    source: str
    reason: str = ''


class EnergyMonitor:
    """Measures the energy of a window with a sampling thread.

    NVML on CUDA devices, RAPL on the CPU; anything unreadable makes
    :meth:`stop` return an ``unavailable`` reading with the reason.

    Args:
        device (torch.device): The benchmarked device.
        rapl_root (str): Powercap sysfs root. Defaults to
            ``/sys/class/powercap``.
        interval (float): Sampling period in seconds. Defaults to 0.1.
    """

    def __init__(self,
                 device: torch.device,
                 rapl_root: str = RAPL_ROOT,
                 interval: float = 0.1) -> None:
        self.interval = interval
        self.meter = None
        self.reason = ''
        try:
            if device.type == 'cuda':
                self.meter = NvmlMeter(device)
            elif device.type == 'cpu':
                self.meter = RaplMeter(find_rapl_zones(rapl_root))
            else:
                raise EnergyUnavailable(
                    f'no energy sensor support for {device.type} devices')
        except EnergyUnavailable as err:
            self.reason = str(err)
        self._error: Optional[Exception] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start_time = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.meter.poll()
            except Exception as err:  # reported by stop()
                self._error = err
                return

    def start(self) -> None:
        """Begin the window."""
        if self.meter is None:
            return
        self._error = None
        self._stop.clear()
        self.meter.start()
        self._start_time = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> EnergyReading:
        """End the window and return its energy."""
        if self.meter is None:
            return EnergyReading(None, None, 'unavailable', self.reason)
        self._stop.set()
        self._thread.join()
        elapsed = time.perf_counter() - self._start_time
        try:
            if self._error is None:
                self.meter.poll()
        except Exception as err:
            self._error = err
        if self._error is not None:
            return EnergyReading(
                None, None, 'unavailable',
                f'{self.meter.source} reading failed during the run: '
                f'{type(self._error).__name__}: {self._error}')
        joules = self.meter.joules(elapsed)
        return EnergyReading(joules, joules / elapsed, self.meter.source)


class PeakMemory:
    """Peak memory of the benchmarked device since :meth:`reset`.

    Args:
        device (torch.device): The benchmarked device.
        status_file (str): The process status file read on CPU. Defaults to
            ``/proc/self/status``.
    """

    def __init__(self,
                 device: torch.device,
                 status_file: str = '/proc/self/status') -> None:
        self.device = device
        self.status_file = status_file
        if device.type == 'cuda':
            self.source = 'CUDA max_memory_allocated'
        elif osp.isfile(status_file):
            self.source = 'process peak RSS (VmHWM)'
        else:
            self.source = 'process peak RSS (ru_maxrss, since process start)'

    def reset(self) -> None:
        """Start a new peak from the current usage."""
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        if not osp.isfile(self.status_file):
            return
        try:
            # "5" resets VmHWM to the current RSS (Linux >= 4.0).
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            self.source = 'process peak RSS (VmHWM, reset before warm-up)'
        except OSError:
            self.source = ('process peak RSS (VmHWM since process start: '
                           '/proc/self/clear_refs not writable)')

    def _status_kb(self, key: str) -> int:
        with open(self.status_file) as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
        raise RuntimeError(f'{key} missing from {self.status_file}')

    def current_mb(self) -> float:
        """Memory in use now, in MiB."""
        if self.device.type == 'cuda':
            return torch.cuda.memory_allocated(self.device) / 2**20
        if osp.isfile(self.status_file):
            return self._status_kb('VmRSS') / 1024
        return self.peak_mb()

    def peak_mb(self) -> float:
        """Peak since the last reset, in MiB."""
        if self.device.type == 'cuda':
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if osp.isfile(self.status_file):
            return self._status_kb('VmHWM') / 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in KiB on Linux and in bytes on macOS.
        return peak / 2**20 if sys.platform == 'darwin' else peak / 1024


def _to_float32(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_float32(item) for item in obj)
    if isinstance(obj, dict):
        return {k: _to_float32(v) for k, v in obj.items()}
    return obj


def _autocast_forward(forward: Callable[..., Any], device_type: str,
                      *args: Any, **kwargs: Any) -> Any:
    with torch.autocast(device_type, dtype=torch.float16):
        return _to_float32(forward(*args, **kwargs))


def autocast_network(detector: nn.Module, device_type: str) -> List[str]:
    """Run a detector's network under float16 autocast, in place.

    The backbone, the neck and every head's ``forward`` (for an RoI head:
    its box and mask heads) compute in fp16 and return fp32, so data
    normalisation, box decoding, NMS and mask pasting stay in fp32, as in
    an fp16 engine deployed with fp32 post-processing (and as mmcv's CPU
    NMS requires: it has no half kernel).

    Args:
        detector (nn.Module): An mmdet detector.
        device_type (str): ``'cuda'`` or ``'cpu'``.

    Returns:
        list[str]: The wrapped modules, e.g. ``['backbone', 'neck',
        'rpn_head', 'roi_head.bbox_head', 'roi_head.mask_head']``.
    """
    wrapped = []
    for name, child in detector.named_children():
        if name == 'data_preprocessor':
            continue
        # an RoI head's own forward is not on the predict path
        targets = [(f'{name}.{sub}', module)
                   for sub, module in child.named_children()
                   if sub.endswith('_head')] if name == 'roi_head' \
            else [(name, child)]
        for label, module in targets:
            module.forward = partial(_autocast_forward, module.forward,
                                     device_type)
            wrapped.append(label)
    return wrapped


@dataclass
class BenchmarkSettings:
    """How to run a benchmark.

    Attributes:
        shape (tuple[int, int]): Input height and width.
        batch (int): Images per call.
        repeats (int): Timed calls.
        warmup (int): Untimed calls before them.
        part (str): ``'backbone'`` (the backbone on a normalised random
            image) or ``'detector'`` (mmdet's ``test_step``/``train_step``
            on random uint8 images: data preprocessing, forward and, in
            inference, post-processing; see :func:`make_detector_batch`).
        mode (str): ``'inference'`` or ``'train'`` (one ``train_step``
            = forward, loss, backward and optimizer step; detectors only).
        deploy (bool): Re-parameterise with
            :func:`vovdet.deploy.reparameterize_model`.
        fuse_conv_bn (bool): Apply :func:`vovdet.deploy.fold_conv_bn`.
        channels_last (bool): NHWC weights and inputs.
        amp (bool): Run inference under ``torch.autocast`` with float16
            (mixed precision; FLOPs are counted in fp32, they are the
            same): the whole backbone, or a detector's network without its
            pre/post-processing (:func:`autocast_network`). Training uses
            the config's optimizer wrapper instead: set
            ``optim_wrapper.type='AmpOptimWrapper'`` for AMP training.
        device (str): ``'auto'`` (CUDA when available), ``'cpu'``,
            ``'cuda'`` or ``'cuda:<i>'``.
        threads (int, optional): ``torch.set_num_threads``; None keeps
            torch's default.
        rapl_root (str): Powercap sysfs root for RAPL.
        power_interval (float): Energy sampling period in seconds.
        seed (int): Seed of the random inputs.
    """
    shape: Tuple[int, int] = (512, 512)
    batch: int = 1
    repeats: int = 50
    warmup: int = 10
    part: str = 'backbone'
    mode: str = 'inference'
    deploy: bool = False
    fuse_conv_bn: bool = False
    channels_last: bool = False
    amp: bool = False
    device: str = 'auto'
    threads: Optional[int] = None
    rapl_root: str = RAPL_ROOT
    power_interval: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if self.part not in PARTS:
            raise ValueError(f"unknown part '{self.part}'; choose one of "
                             f"{', '.join(PARTS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode '{self.mode}'; choose one of "
                             f"{', '.join(MODES)}")
        if self.repeats < 1 or self.warmup < 0 or self.batch < 1:
            raise ValueError(
                f'need repeats >= 1, warmup >= 0 and batch >= 1, got '
                f'repeats={self.repeats}, warmup={self.warmup}, '
                f'batch={self.batch}')
        if self.mode == 'train':
            if self.part != 'detector':
                raise ValueError("mode='train' needs part='detector' (a "
                                 'backbone alone has no loss)')
            if self.amp:
                raise ValueError(
                    "amp is inference autocast; for mixed-precision training "
                    "set the config's optim_wrapper.type='AmpOptimWrapper'")
            if self.deploy or self.fuse_conv_bn:
                raise ValueError('deploy and fuse_conv_bn are inference-only '
                                 "transforms; drop them for mode='train'")

    def torch_device(self) -> torch.device:
        """The device to run on."""
        if self.device == 'auto':
            return torch.device(
                'cuda' if torch.cuda.is_available() else 'cpu')
        return torch.device(self.device)


@dataclass
class BenchmarkResult:
    """Measurements of one model (see the module docstring).

    Attributes:
        name (str): Label of the model.
        settings (dict): The :class:`BenchmarkSettings` used.
        device_name (str): CPU model or GPU name.
        threads (int): Torch intra-op threads used.
        params (int): Parameters of the timed model (after transforms).
        flops (int, optional): Multiply-adds of one timed call (one batch);
            None in train mode (backward is not counted).
        mac (int, optional): Memory access cost of that call, in elements.
        latencies_ms (list[float]): Every timed call.
        latency_median_ms (float): Median latency per call.
        latency_p90_ms (float): 90th percentile.
        fps (float): Images per second at the median latency.
        peak_memory_mb (float): Peak memory (MiB) over warm-up and timing.
        memory_before_mb (float): Usage (MiB) just before the warm-up.
        memory_source (str): What ``peak_memory_mb`` measures.
        gflops_per_s (float, optional): flops / median latency / 1e9.
        energy_j_per_img (float, optional): Energy / images of the timed
            calls; None when unavailable.
        average_power_w (float, optional): Average power over the timed
            calls.
        energy_source (str): ``'nvml'``, ``'rapl'`` or ``'unavailable'``.
        energy_reason (str): Why energy is unavailable.
        deployed (list[str]): Modules converted by ``switch_to_deploy``.
        folded_bn (int): BatchNorm layers folded into convs.
        transform_max_rel_diff (float, optional): Output change caused by
            the transforms, relative to the output's largest magnitude.
        last_loss (float, optional): Total loss of the last train step.
    """
    name: str
    settings: Dict[str, Any]
    device_name: str
    threads: int
    params: int
    flops: Optional[int]
    mac: Optional[int]
    latencies_ms: List[float]
    latency_median_ms: float
    latency_p90_ms: float
    fps: float
    peak_memory_mb: float
    memory_before_mb: float
    memory_source: str
    gflops_per_s: Optional[float]
    energy_j_per_img: Optional[float]
    average_power_w: Optional[float]
    energy_source: str
    energy_reason: str = ''
    deployed: List[str] = field(default_factory=list)
    folded_bn: int = 0
    transform_max_rel_diff: Optional[float] = None
    last_loss: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain-container form (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'BenchmarkResult':
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from ``/proc/cpuinfo`` (else platform)."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    import platform
    return platform.processor() or platform.machine()


def make_detector_batch(model: nn.Module,
                        shape: Tuple[int, int],
                        batch: int,
                        with_gt: bool,
                        seed: int = 0,
                        num_gt: int = 5) -> Dict[str, Any]:
    """A batch in the format mmdet's data loaders produce.

    Random uint8 images of ``shape`` (already "resized": ``scale_factor``
    1) with their metainfo; with ``with_gt`` also ``num_gt`` random boxes
    per image with labels and box-shaped masks, for ``train_step``.

    Args:
        model (nn.Module): The detector (its heads give ``num_classes``).
        shape (tuple[int, int]): Image height and width.
        batch (int): Images.
        with_gt (bool): Add ground truth.
        seed (int): Random seed. Defaults to 0.
        num_gt (int): Boxes per image. Defaults to 5.

    Returns:
        dict: ``inputs`` (list of 3xHxW uint8 tensors) and ``data_samples``.
    """
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    h, w = shape
    gen = torch.Generator().manual_seed(seed)
    classes = [
        m.num_classes for m in model.modules()
        if isinstance(getattr(m, 'num_classes', None), int)
    ]
    # the largest head: the RPN's single objectness class is not the
    # dataset's
    num_classes = max(classes) if classes else 1
    inputs, samples = [], []
    for i in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_path=f'random_{i}.jpg',
                ori_shape=(h, w),
                img_shape=(h, w),
                scale_factor=(1.0, 1.0)))
        if with_gt:
            corner = torch.rand(num_gt, 2, generator=gen) * 0.6
            size = 0.1 + torch.rand(num_gt, 2, generator=gen) * 0.3
            scale = torch.tensor([w, h], dtype=torch.float32)
            boxes = torch.cat([corner * scale, (corner + size) * scale], 1)
            masks = np.zeros((num_gt, h, w), dtype=np.uint8)
            for k, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
                masks[k, y1:y2, x1:x2] = 1
            sample.gt_instances = InstanceData(
                bboxes=boxes,
                labels=torch.randint(0, num_classes, (num_gt, ),
                                     generator=gen),
                masks=BitmapMasks(masks, h, w))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a timer measures it (no-op on CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _time_calls(fn: Callable[[], Any], warmup: int, repeats: int,
                device: torch.device,
                monitor: EnergyMonitor) -> Tuple[List[float], Any,
                                                 EnergyReading]:
    """Seconds per timed call, the last output and the energy reading."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    out = None
    monitor.start()
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    energy = monitor.stop()
    return times, out, energy


@dataclass
class PreparedModel:
    """A model ready to be timed (see :func:`prepare_model`).

    Attributes:
        model (nn.Module): The model, transformed and on its device.
        call (callable): One timed call (inference or a training step).
        device (torch.device): Where it runs.
        flops (int, optional): Multiply-adds per call (inference only).
        mac (int, optional): Memory access cost per call (inference only).
        deployed (list[str]): Re-parameterised modules.
        folded (int): BatchNorms folded into convs.
        max_diff (float, optional): Largest relative change of the output
            the transforms caused.
    """
    model: nn.Module
    call: Callable[[], Any]
    device: torch.device
    flops: Optional[int] = None
    mac: Optional[int] = None
    deployed: List[str] = field(default_factory=list)
    folded: int = 0
    max_diff: Optional[float] = None


def prepare_model(model: nn.Module,
                  settings: BenchmarkSettings,
                  name: str = '',
                  optim_wrapper_cfg: Optional[dict] = None) -> PreparedModel:
    """Move ``model`` to its device, apply the inference transforms of
    ``settings`` (checking they keep the output), count its FLOPs and MAC
    and return the call to time. Arguments as :func:`benchmark_model`."""
    device = settings.torch_device()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    model = model.to(device)
    memory_format = (torch.channels_last if settings.channels_last else
                     torch.contiguous_format)

    if settings.part == 'backbone':
        gen = torch.Generator().manual_seed(settings.seed)
        image = torch.randn((settings.batch, 3, *settings.shape),
                            generator=gen).to(device)
        image = image.contiguous(memory_format=memory_format)

        def forward(m: nn.Module) -> Any:
            return m(image)

        check_forward = forward
    else:
        data = make_detector_batch(
            model, settings.shape, settings.batch,
            with_gt=settings.mode == 'train', seed=settings.seed)

        def forward(m: nn.Module) -> Any:
            return m.test_step(data)

        def check_forward(m: nn.Module) -> Any:
            return m.extract_feat(m.data_preprocessor(data, False)['inputs'])

    prepared = PreparedModel(model, lambda: None, device)
    if settings.mode == 'inference':
        model.eval()
        if settings.deploy or settings.fuse_conv_bn or \
                settings.channels_last:
            # True: a '+deploy' model must have branches to fuse
            form = to_inference_form(
                model,
                fuse_branches=settings.deploy,
                fold_bn=settings.fuse_conv_bn,
                channels_last=settings.channels_last,
                check=check_forward,
                name=name)
            prepared.deployed = form.reparameterized
            prepared.folded = form.folded_bn
            prepared.max_diff = form.max_rel_diff
        complexity = get_complexity(
            model, image if settings.part == 'backbone' else torch.empty(0),
            forward_fn=lambda m, _: forward(m))
        prepared.flops, prepared.mac = complexity.flops, complexity.mac
        # a detector's network runs in fp16, its pre/post-processing in fp32
        if settings.amp and settings.part == 'detector':
            autocast_network(model, device.type)

        def call() -> Any:
            with torch.no_grad(), torch.autocast(
                    device.type, dtype=torch.float16,
                    enabled=settings.amp and settings.part == 'backbone'):
                return forward(model)
    else:
        from mmengine.optim import build_optim_wrapper
        model = model.to(memory_format=memory_format)
        model.train()
        optim_wrapper = build_optim_wrapper(
            model, optim_wrapper_cfg or dict(
                type='OptimWrapper',
                optimizer=dict(
                    type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4)))

        def call() -> Any:
            return model.train_step(data, optim_wrapper)

    prepared.model, prepared.call = model, call
    return prepared


def benchmark_model(model: nn.Module,
                    settings: BenchmarkSettings,
                    name: str = '',
                    optim_wrapper_cfg: Optional[dict] = None
                    ) -> BenchmarkResult:
    """Measure one model.

    Args:
        model (nn.Module): A backbone (any module called as ``model(x)``)
            when ``settings.part == 'backbone'``, an mmdet detector when it
            is ``'detector'``. Transforms are applied in place.
        settings (BenchmarkSettings): What to run.
        name (str): Label for the result. Defaults to the class name.
        optim_wrapper_cfg (dict, optional): Optimizer wrapper for train
            mode (the config's ``optim_wrapper``). Defaults to SGD with
            lr 0.02, momentum 0.9, weight decay 1e-4.

    Returns:
        BenchmarkResult: The measurements.
    """
    prepared = prepare_model(model, settings, name, optim_wrapper_cfg)
    model, call, device = prepared.model, prepared.call, prepared.device
    flops = prepared.flops
    memory = PeakMemory(device)
    monitor = EnergyMonitor(device, settings.rapl_root,
                            settings.power_interval)
    memory_before = memory.current_mb()
    memory.reset()
    seconds, out, energy = _time_calls(call, settings.warmup,
                                       settings.repeats, device, monitor)
    peak = memory.peak_mb()
    median = float(np.median(seconds))
    images = settings.batch * settings.repeats
    last_loss = None
    if settings.mode == 'train':
        last_loss = float(out['loss'])
    return BenchmarkResult(
        name=name or type(model).__name__,
        settings=asdict(settings),
        device_name=device_name(device),
        threads=torch.get_num_threads(),
        params=sum(p.numel() for p in model.parameters()),
        flops=flops,
        mac=prepared.mac,
        latencies_ms=[s * 1e3 for s in seconds],
        latency_median_ms=median * 1e3,
        latency_p90_ms=float(np.percentile(seconds, 90)) * 1e3,
        fps=settings.batch / median,
        peak_memory_mb=peak,
        memory_before_mb=memory_before,
        memory_source=memory.source,
        gflops_per_s=None if flops is None else flops / median / 1e9,
        energy_j_per_img=(None if energy.joules is None else
                          energy.joules / images),
        average_power_w=energy.average_power_w,
        energy_source=energy.source,
        energy_reason=energy.reason,
        deployed=prepared.deployed,
        folded_bn=prepared.folded,
        transform_max_rel_diff=prepared.max_diff,
        last_loss=last_loss)


@dataclass
class ModelSpec:
    """What to build: an mmdet config or a bare backbone.

    Attributes:
        label (str): Name shown in results.
        config (str, optional): Config path; its ``model`` is built.
        checkpoint (str, optional): Weights for the config's model.
        cfg_options (dict, optional): Overrides merged into the config.
        backbone (dict, optional): A backbone config dict built through
            mmdet's ``MODELS`` (instead of ``config``).
    """
    label: str
    config: Optional[str] = None
    checkpoint: Optional[str] = None
    cfg_options: Optional[Dict[str, Any]] = None
    backbone: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        if (self.config is None) == (self.backbone is None):
            raise ValueError(f"model '{self.label}': give exactly one of "
                             f'config and backbone')
        if self.backbone is not None and self.checkpoint is not None:
            raise ValueError(f"model '{self.label}': checkpoints are loaded "
                             f'into configs; a bare backbone has random '
                             f'weights')


def build_spec_model(spec: ModelSpec,
                     part: str) -> Tuple[nn.Module, Optional[dict]]:
    """Build the module to benchmark and the config's optimizer wrapper.

    Args:
        spec (ModelSpec): The model.
        part (str): ``'backbone'`` or ``'detector'``.

    Returns:
        tuple: The module (the detector, or its backbone) and the config's
        ``optim_wrapper`` (None for bare backbones).
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import vovdet  # noqa: F401  (registers our backbones)
    if spec.backbone is not None:
        if part != 'backbone':
            raise ValueError(f"model '{spec.label}' is a bare backbone; use "
                             f"part='backbone'")
        register_all_modules(init_default_scope=True)
        return MODELS.build(copy.deepcopy(spec.backbone)), None
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(spec.config)
    if spec.cfg_options:
        cfg.merge_from_dict(spec.cfg_options)
    model = build_model_from_config(cfg)
    if spec.checkpoint is not None:
        load_checkpoint(model, spec.checkpoint, map_location='cpu',
                        strict=True)
    if part == 'backbone':
        if getattr(model, 'backbone', None) is None:
            raise ValueError(f'{type(model).__name__} has no backbone; use '
                             f"part='detector'")
        return model.backbone, None
    return model, cfg.get('optim_wrapper')


def benchmark_spec(spec: ModelSpec,
                   settings: BenchmarkSettings) -> BenchmarkResult:
    """Build a :class:`ModelSpec` and benchmark it in this process."""
    model, optim_cfg = build_spec_model(spec, settings.part)
    return benchmark_model(model, settings, spec.label, optim_cfg)


def reference_conv3x3(
        channels: int,
        size: int,
        channels_last: bool,
        device: torch.device,
        generator: Optional[torch.Generator] = None
) -> Tuple[Callable[[], Any], int, str]:
    """The reference operation of the "3x3-conv peak": a stride-1
    ``channels -> channels`` 3x3 conv on a batch-1 ``size x size`` map.

    Args:
        channels (int): Input and output channels.
        size (int): Height and width of the map.
        channels_last (bool): NHWC instead of NCHW memory format.
        device (torch.device): Where it runs.
        generator (torch.Generator, optional): For the input. Defaults to
            one seeded with 0.

    Returns:
        tuple: The call to time (no autograd), its multiply-adds and its
        name, e.g. ``'conv3x3 128->128 @ 128x128 NHWC'``.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(device).eval().to(memory_format=fmt)
    x = torch.randn(1, channels, size, size,
                    generator=generator or torch.Generator().manual_seed(0))
    x = x.to(device).contiguous(memory_format=fmt)

    def call() -> Any:
        with torch.no_grad():
            return conv(x)

    name = (f'conv3x3 {channels}->{channels} @ {size}x{size} '
            f"{'NHWC' if channels_last else 'NCHW'}")
    return call, 9 * channels * channels * size * size, name


def time_in_turns(calls: Dict[str, Callable[[], Any]], warmup: int,
                  rounds: int, device: torch.device) -> Dict[str, List[float]]:
    """Seconds per call of every callable, timed one call each in turns.

    Each round calls every callable once, starting one further along the
    list than the last round, so no callable always follows the same one.
    A slow spell of the machine then slows every callable of that round
    alike, and per-round ratios cancel it: the way to compare models on a
    noisy machine (a shared VM, a laptop changing its clock).

    Args:
        calls (dict[str, callable]): What to time, by label.
        warmup (int): Untimed rounds first.
        rounds (int): Timed rounds.
        device (torch.device): Synchronised around each call on CUDA.

    Returns:
        dict[str, list[float]]: ``rounds`` durations per label.
    """
    labels = list(calls)
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: Dict[str, List[float]] = {label: [] for label in labels}
    for r in range(rounds):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            _sync(device)
            start = time.perf_counter()
            calls[label]()
            _sync(device)
            times[label].append(time.perf_counter() - start)
    return times


@dataclass
class PairedResult:
    """Models (and a reference 3x3 conv) timed in turns in one process.

    Attributes:
        labels (list[str]): The models; the first is the base of the
            speed-ups.
        latencies_ms (dict[str, list[float]]): Per-round latency by label,
            the reference conv under ``'peak'``.
        flops (dict[str, int]): Multiply-adds per call by label.
        peak_name (str, optional): The reference conv.
        speed_ups (dict[str, float]): Median over rounds of the base's
            latency / the model's, for every model but the base.
        peak_fractions (dict[str, float]): Median over rounds of the model's
            GFLOP/s / the reference conv's in the same round.
    """
    labels: List[str]
    latencies_ms: Dict[str, List[float]]
    flops: Dict[str, Optional[int]]
    peak_name: Optional[str] = None
    speed_ups: Dict[str, float] = field(default_factory=dict)
    peak_fractions: Dict[str, float] = field(default_factory=dict)


def paired_benchmark(specs: List[Tuple[ModelSpec, BenchmarkSettings]],
                     peak_conv: Optional[Tuple[int, int, bool]] = None,
                     warmup: int = 3,
                     rounds: int = 20) -> PairedResult:
    """Time several models in turns (:func:`time_in_turns`) in this process.

    The way to measure the speed-up of a transform (conv+BN folding, RepVGG
    deploy, channels-last) and a model's fraction of the machine's peak on
    a noisy machine: both are ratios of calls made seconds apart, never of
    runs made minutes apart.

    Args:
        specs (list[tuple[ModelSpec, BenchmarkSettings]]): The models with
            their inference settings; the first is the base of the
            speed-ups. Labels must differ.
        peak_conv (tuple[int, int, bool], optional): ``(channels, size,
            channels_last)`` of a stride-1 ``c -> c`` 3x3 conv on a batch-1
            map, timed in the same turns; None skips the peak fractions.
        warmup (int): Untimed rounds.
        rounds (int): Timed rounds.

    Returns:
        PairedResult: Latencies, speed-ups and peak fractions.
    """
    labels = [spec.label for spec, _ in specs]
    if len(set(labels)) != len(labels) or 'peak' in labels:
        raise ValueError(f'paired models need distinct labels other than '
                         f"'peak', got {labels}")
    if any(s.mode != 'inference' for _, s in specs):
        raise ValueError('paired benchmarks time inference only')
    calls: Dict[str, Callable[[], Any]] = {}
    flops: Dict[str, Optional[int]] = {}
    device = specs[0][1].torch_device()
    for spec, settings in specs:
        # the same initial weights for every model, as each fresh process
        # of run_isolated has: a detector's post-processing work depends on
        # its detections, so a variant must not differ from its base in them
        torch.manual_seed(settings.seed)
        model, _ = build_spec_model(spec, settings.part)
        prepared = prepare_model(model, settings, spec.label)
        calls[spec.label] = prepared.call
        flops[spec.label] = prepared.flops
    peak_name = None
    if peak_conv is not None:
        calls['peak'], flops['peak'], peak_name = reference_conv3x3(
            *peak_conv, device)
    seconds = time_in_turns(calls, warmup, rounds, device)
    result = PairedResult(
        labels=labels,
        latencies_ms={k: [t * 1e3 for t in v] for k, v in seconds.items()},
        flops=flops,
        peak_name=peak_name)
    base = labels[0]
    for label in labels:
        if label != base:
            result.speed_ups[label] = float(np.median(
                np.array(seconds[base]) / np.array(seconds[label])))
        if peak_conv is not None and flops[label]:
            model_rate = flops[label] / np.array(seconds[label])
            peak_rate = flops['peak'] / np.array(seconds['peak'])
            result.peak_fractions[label] = float(
                np.median(model_rate / peak_rate))
    return result


def _run_child(request: Dict[str, Any], what: str,
               timeout: Optional[float]) -> Dict[str, Any]:
    """Run a benchmark request in a fresh Python process, return its
    result dict."""
    code = ('from vovdet.analysis.benchmark import run_request_from_stdin; '
            'run_request_from_stdin()')
    proc = subprocess.run([sys.executable, '-c', code],
                          input=json.dumps(request),
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    lines = [
        line for line in proc.stdout.splitlines()
        if line.startswith(_RESULT_MARKER)
    ]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f'benchmark of {what} failed in its subprocess (exit '
            f'{proc.returncode}):\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][len(_RESULT_MARKER):])


def run_isolated(spec: ModelSpec,
                 settings: BenchmarkSettings,
                 timeout: Optional[float] = None) -> BenchmarkResult:
    """Benchmark in a fresh Python process.

    Every model then starts from the same state: its own peak RSS, no
    allocator cache or warmed-up kernels left by the previous model.

    Args:
        spec (ModelSpec): The model.
        settings (BenchmarkSettings): What to run.
        timeout (float, optional): Seconds before the child is killed.

    Returns:
        BenchmarkResult: The child's measurements.
    """
    request = dict(spec=asdict(spec), settings=asdict(settings))
    return BenchmarkResult.from_dict(
        _run_child(request, f"'{spec.label}'", timeout))


def run_paired_isolated(specs: List[Tuple[ModelSpec, BenchmarkSettings]],
                        peak_conv: Optional[Tuple[int, int, bool]] = None,
                        warmup: int = 3,
                        rounds: int = 20,
                        timeout: Optional[float] = None) -> PairedResult:
    """:func:`paired_benchmark` in a fresh Python process."""
    request = dict(
        paired=[dict(spec=asdict(spec), settings=asdict(settings))
                for spec, settings in specs],
        peak_conv=peak_conv, warmup=warmup, rounds=rounds)
    labels = ', '.join(spec.label for spec, _ in specs)
    return PairedResult(**_run_child(request, f'[{labels}] in turns',
                                     timeout))


def run_request_from_stdin() -> None:
    """Child side of :func:`run_isolated` and :func:`run_paired_isolated`:
    read a JSON request, print the result on one marked line."""
    request = json.loads(sys.stdin.read())
    if 'paired' in request:
        peak_conv = request['peak_conv']
        result = asdict(
            paired_benchmark(
                [(ModelSpec(**r['spec']), BenchmarkSettings(**r['settings']))
                 for r in request['paired']],
                None if peak_conv is None else tuple(peak_conv),
                request['warmup'], request['rounds']))
    else:
        settings = BenchmarkSettings(**request['settings'])
        result = benchmark_spec(ModelSpec(**request['spec']),
                                settings).to_dict()
    print(_RESULT_MARKER + json.dumps(result), flush=True)


def _fmt(value: Optional[float], pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    return pattern.format(value)


def format_result(result: BenchmarkResult) -> str:
    """Human-readable report of one result."""
    s = result.settings
    h, w = s['shape']
    transforms = [
        flag for flag, on in (('deploy', s['deploy']),
                              ('fuse-conv-bn', s['fuse_conv_bn']),
                              ('channels-last', s['channels_last']),
                              ('fp16-autocast', s.get('amp', False))) if on
    ]
    if result.energy_j_per_img is None:
        energy = f'unavailable ({result.energy_reason})'
    else:
        energy = (f'{result.energy_j_per_img:.4f} J/img (average '
                  f'{result.average_power_w:.1f} W, {result.energy_source})')
    flops = None if result.flops is None else result.flops / 1e9
    mac = None if result.mac is None else result.mac / 1e6
    lines = [
        f'model:               {result.name}',
        f"run:                 {s['part']} {s['mode']}, batch {s['batch']} "
        f"x 3 x {h} x {w}, {s['warmup']} warm-up + {s['repeats']} timed",
        f'device:              {result.device_name}, threads: '
        f'{result.threads}',
        f"transforms:          {', '.join(transforms) or 'none'}",
        f'params:              {result.params / 1e6:.3f} M',
        f"FLOPs (multiply-add): {_fmt(flops, '{:.3f}')} G per batch",
        f"MAC:                 {_fmt(mac, '{:.2f}')} M elements",
        f'latency median/p90:  {result.latency_median_ms:.2f} / '
        f'{result.latency_p90_ms:.2f} ms per batch',
        f'throughput:          {result.fps:.2f} images/s',
        f'peak memory:         {result.peak_memory_mb:.1f} MiB '
        f'({result.memory_source}; {result.memory_before_mb:.1f} MiB '
        f'before warm-up)',
        f"compute efficiency:  {_fmt(result.gflops_per_s, '{:.2f}')} "
        f'GFLOP/s (multiply-adds per second)',
        f'energy:              {energy}',
    ]
    if result.transform_max_rel_diff is not None:
        lines.append(
            f'transform check:     {result.folded_bn} BN folded, deployed '
            f"{result.deployed or 'nothing'}, max relative output change "
            f'{result.transform_max_rel_diff:.2e}')
    if result.last_loss is not None:
        lines.append(f'last train loss:     {result.last_loss:.4f}')
    return '\n'.join(lines)
