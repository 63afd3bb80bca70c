"""The GPU measurement suite: the paper's Table 4 and Table 5 timings,
energy per image, training throughput and backbone efficiency, as one run
that fits the few minutes a GPU machine is lent for.

Steps, in order (each skipped with a printed reason when its estimated time
no longer fits the budget; see :class:`Budget`):

1. ``table4``: RefineDet320 with VoVNet-39, ResNet-50 and DenseNet-201
   (paper Table 4), each plain, BN-folded and under fp16 autocast: FPS at
   batch 1, peak memory, J/img (NVML), GFLOP/s
   (:func:`~vovdet.analysis.paper_table.run_table`);
   ``table4_vs_resnet50``: the three plain detectors timed in turns in one
   process (:func:`~vovdet.analysis.benchmark.paired_benchmark`), speed-ups
   over ResNet-50; ``table4_more`` (optional): VoVNet-57, ResNet-101 and
   DenseNet-161.
2. ``maskrcnn_inference``, ``maskrcnn_train_fp32``, ``maskrcnn_train_amp``:
   Mask R-CNN (GN) VoVNet-39 vs ResNet-50 at 800x1333 (paper Table 5).
3. ``backbones_<size>_b<batch>``: backbones at 512² and 1024², batch 1 and
   8, against the measured GEMM and 3x3-conv peaks; ``backbones_vs_timm``:
   the same architectures from timm, timed in turns with ours.
4. ``onnx``: the VoVNet-39 RefineDet320 and Mask R-CNN (the slim shapes
   detectors in the dry run) exported to ONNX with their post-processing, timed in turns with PyTorch under every ONNX
   Runtime provider that runs (CPU, CUDA, TensorRT); those that cannot run
   are reported with the reason (:func:`.gpu_suite_steps.onnx`).

``dry_run`` runs every step on the CPU with tiny shapes and one repeat, so
the suite is known to work before a GPU is lent.
"""
import json
import os
import os.path as osp
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from . import gpu_suite_steps as steps
from .gpu_suite_steps import StepSkipped
from .gpu_suite_report import environment, format_summary, write_report

DEFAULT_BUDGET_MIN = 8.0


@dataclass
class SuiteSizes:
    """Shapes and repeats of one suite run.

    Attributes:
        refinedet_shape (tuple[int, int]): RefineDet input.
        maskrcnn_shape (tuple[int, int]): Mask R-CNN input.
        backbone_shapes (tuple): Backbone inputs.
        backbone_batches (tuple[int, ...]): Backbone batch sizes.
        train_batch (int): Images per Mask R-CNN training step.
        runs (dict[str, tuple[int, int]]): ``(warm-up, repeats)`` by kind:
            ``refinedet``, ``maskrcnn``, ``train``, ``backbone``.
        peak (dict): Arguments of
            :func:`~vovdet.analysis.paper_table.measure_peak`.
        isolate (bool): Every table row in a fresh process.
        paired (bool): Also time each table's models in turns with their
            variants and the conv peak.
        maskrcnn_options (dict): Config overrides of every Mask R-CNN run.
        onnx_configs (tuple[str, str]): The RefineDet and the Mask R-CNN
            config of the ``onnx`` step.
        estimates_s (dict[str, float]): Expected seconds per step.
    """
    refinedet_shape: Tuple[int, int]
    maskrcnn_shape: Tuple[int, int]
    backbone_shapes: Tuple[Tuple[int, int], ...]
    backbone_batches: Tuple[int, ...]
    train_batch: int
    runs: Dict[str, Tuple[int, int]]
    peak: Dict[str, Any]
    isolate: bool
    paired: bool
    maskrcnn_options: Dict[str, Any]
    onnx_configs: Tuple[str, str]
    estimates_s: Dict[str, float]


# Step estimates on the GPU machine are estimates, not measurements (no GPU
# run yet): a fresh benchmark process there costs ~10 s (interpreter, torch
# CUDA start, mmdet import, model build), timing itself < 3 s per row at
# these repeats (RefineDet: 200 calls, so that the energy window spans
# NVML's 1 s power average); a backbone table (one process) ~40 s, mostly
# model builds.
# Their required sum, ~475 s, fits the default 8 minutes, leaving out the
# optional table4_more. Corrected at run time by Budget.slowdown.
GPU_SIZES = SuiteSizes(
    refinedet_shape=(320, 320),
    maskrcnn_shape=(800, 1333),
    backbone_shapes=((512, 512), (1024, 1024)),
    backbone_batches=(1, 8),
    train_batch=2,
    runs=dict(refinedet=(10, 200), maskrcnn=(3, 10), train=(2, 5),
              backbone=(5, 20)),
    peak=dict(gemm_size=8192,
              conv_shapes=((128, 128), (256, 64), (512, 32))),
    isolate=True,
    paired=True,
    maskrcnn_options={},
    # the Table 4 and Table 5 VoVNet-39 detectors
    onnx_configs=('configs/vovnet39_refinedet320_coco.py',
                  'configs/vovnet39_maskrcnn_coco.py'),
    estimates_s=dict(table4=130, table4_vs_resnet50=15, table4_more=130,
                     maskrcnn_inference=45, maskrcnn_train_fp32=35,
                     maskrcnn_train_amp=35, backbones=40,
                     backbones_vs_timm=30, onnx=25))
# From dry runs on the project's 2-core CPU (docs/benchmarks.md, "GPU
# suite"), rounded up.
DRY_RUN_SIZES = SuiteSizes(
    refinedet_shape=(64, 64),
    maskrcnn_shape=(64, 96),
    backbone_shapes=((64, 64), ),
    backbone_batches=(1, 2),
    train_batch=1,
    runs=dict(refinedet=(0, 1), maskrcnn=(0, 1), train=(0, 1),
              backbone=(0, 1)),
    peak=dict(gemm_size=64, conv_shapes=((16, 32), )),
    isolate=False,
    paired=False,
    # fewer proposals and sampled RoIs: the RoI heads' cost, not the
    # image's, dominates at 64x96 on a CPU
    maskrcnn_options={
        'model.test_cfg.rpn.max_per_img': 50,
        'model.test_cfg.rcnn.max_per_img': 20,
        'model.train_cfg.rpn_proposal.max_per_img': 50,
        'model.train_cfg.rcnn.sampler.num': 32
    },
    # the slim shapes detectors: the VoVNet-39 exports alone take a
    # minute on 2 cores (the export tests cover VoVNet-39)
    onnx_configs=('configs/vovnet19slim_refinedet192_shapes.py',
                  'configs/vovnet19slim_maskrcnn_shapes.py'),
    estimates_s=dict(table4=20, table4_vs_resnet50=3, table4_more=20,
                     maskrcnn_inference=5, maskrcnn_train_fp32=5,
                     maskrcnn_train_amp=5, backbones=5,
                     backbones_vs_timm=10, onnx=20))


class Budget:
    """Wall-clock budget of a suite run.

    A step runs only when its estimate, scaled by the worst ratio of actual
    to estimated time seen so far (:attr:`slowdown`, at least 1), fits in
    what is left; an optional step must also leave room for every required
    step after it.

    Args:
        total_s (float): Seconds for the whole run.
        start (float, optional): ``time.time()`` when the run began (e.g.
            before the carried wheels were installed). Defaults to now.
    """

    def __init__(self, total_s: float, start: Optional[float] = None) -> None:
        self.total_s = float(total_s)
        self.start = time.time() if start is None else float(start)
        self.slowdown = 1.0

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.time() - self.start

    def remaining(self) -> float:
        """Seconds left (negative once over)."""
        return self.total_s - self.elapsed()

    def check(self, estimate_s: float, reserve_s: float = 0.0) -> str:
        """Why a step of ``estimate_s`` may not start ('' if it may).

        Args:
            estimate_s (float): The step's estimate.
            reserve_s (float): Estimated seconds that must stay free for
                the required steps after it.
        """
        need = estimate_s * self.slowdown
        left = self.remaining()
        if need + reserve_s * self.slowdown <= left:
            return ''
        reserve = (f' plus {reserve_s * self.slowdown:.0f} s kept for the '
                   f'required steps after it' if reserve_s else '')
        return (f'budget: needs ~{need:.0f} s (estimate {estimate_s:.0f} s x '
                f'slowdown {self.slowdown:.2f}){reserve}, {max(left, 0):.0f} '
                f's of {self.total_s:.0f} s left')

    def record(self, estimate_s: float, actual_s: float) -> None:
        """Update :attr:`slowdown` with a finished step."""
        if estimate_s > 0:
            self.slowdown = max(self.slowdown, actual_s / estimate_s)


@dataclass
class Step:
    """One unit of the suite.

    Attributes:
        name (str): File stem and key in ``suite.json``.
        section (str): ``table4``, ``maskrcnn``, ``backbones`` or ``onnx``.
        estimate_s (float): Expected seconds.
        run (callable): ``run(context) -> dict`` with ``summary`` (lines
            for the one-screen summary), ``tables`` (TableResult by file
            stem) and any data to keep; raises :class:`StepSkipped`.
        optional (bool): Run only if the required steps after it still fit.
    """
    name: str
    section: str
    estimate_s: float
    run: Callable[['SuiteContext'], Dict[str, Any]]
    optional: bool = False


@dataclass
class StepRecord:
    """What happened to a step (``status``: done, skipped or failed)."""
    name: str
    section: str
    status: str
    reason: str = ''
    seconds: float = 0.0
    estimate_s: float = 0.0
    summary: List[str] = field(default_factory=list)
    files: List[str] = field(default_factory=list)
    data: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteContext:
    """Shared state of a run, passed to every step.

    Attributes:
        device (str): ``'cuda:0'`` or ``'cpu'``.
        sizes (SuiteSizes): Shapes and repeats.
        out_dir (str): Where files go.
        root (str): Repository root (the configs are under it).
        dry_run (bool): CPU check run.
        threads (int, optional): Torch threads (CPU).
        results (dict[str, StepRecord]): Finished steps by name.
    """
    device: str
    sizes: SuiteSizes
    out_dir: str
    root: str
    dry_run: bool
    threads: Optional[int] = None
    results: Dict[str, StepRecord] = field(default_factory=dict)


def build_steps(sizes: SuiteSizes) -> List[Step]:
    """The suite's steps in run order, with ``sizes``' estimates."""
    est = sizes.estimates_s
    plan = [
        Step('table4', 'table4', est['table4'], steps.table4),
        Step('table4_vs_resnet50', 'table4', est['table4_vs_resnet50'],
             steps.table4_vs_resnet50),
        Step('table4_more', 'table4', est['table4_more'], steps.table4_more,
             optional=True),
        Step('maskrcnn_inference', 'maskrcnn', est['maskrcnn_inference'],
             steps.maskrcnn_inference),
        Step('maskrcnn_train_fp32', 'maskrcnn', est['maskrcnn_train_fp32'],
             steps.maskrcnn_train_fp32),
        Step('maskrcnn_train_amp', 'maskrcnn', est['maskrcnn_train_amp'],
             steps.maskrcnn_train_amp),
    ]
    for shape in sizes.backbone_shapes:
        for batch in sizes.backbone_batches:
            plan.append(
                Step(f'backbones_{shape[0]}x{shape[1]}_b{batch}',
                     'backbones', est['backbones'],
                     steps.backbone_table(shape, batch)))
    plan += [
        Step('backbones_vs_timm', 'backbones', est['backbones_vs_timm'],
             steps.backbones_vs_timm),
        Step('onnx', 'onnx', est['onnx'], steps.onnx),
    ]
    return plan


def run_steps(plan: List[Step], context: SuiteContext, budget: Budget,
              log: Callable[[str], None] = print) -> List[StepRecord]:
    """Run ``plan`` in order within ``budget``; every outcome is recorded.

    A step that raises is recorded as failed with its error and the run
    goes on: a lent machine's minutes are not spent twice.
    """
    records = []
    for i, step in enumerate(plan):
        reserve = sum(s.estimate_s for s in plan[i + 1:] if not s.optional) \
            if step.optional else 0.0
        reason = budget.check(step.estimate_s, reserve)
        record = StepRecord(step.name, step.section, 'skipped', reason,
                            estimate_s=step.estimate_s)
        if reason:
            log(f'[suite] skip {step.name}: {reason}')
            records.append(record)
            continue
        log(f'[suite] {step.name} (estimate {step.estimate_s:.0f} s, '
            f'{budget.remaining():.0f} s left)')
        start = time.time()
        try:
            output = step.run(context)
            record.status, record.reason = 'done', ''
            record.summary = output.pop('summary', [])
            record.files = output.pop('files', [])
            for stem, table in output.pop('tables', {}).items():
                record.files += write_table_files(table, context.out_dir,
                                                  stem)
            record.data = output
        except StepSkipped as err:
            record.reason = str(err)
            log(f'[suite] skip {step.name}: {err}')
        except Exception as err:  # keep going; the record names the error
            record.status = 'failed'
            record.reason = f'{type(err).__name__}: {err}'
            record.data = dict(traceback=traceback.format_exc()[-4000:])
            log(f'[suite] FAILED {step.name}: {record.reason}')
        record.seconds = time.time() - start
        if record.status == 'done':
            budget.record(step.estimate_s, record.seconds)
        context.results[step.name] = record
        records.append(record)
    return records


def write_table_files(table: Any, out_dir: str, stem: str) -> List[str]:
    """:func:`~vovdet.analysis.paper_table.write_table`, returning the
    paths relative to ``out_dir``."""
    from .paper_table import write_table
    return [osp.relpath(p, out_dir)
            for p in write_table(table, out_dir, stem).values()]


def run_suite(out_dir: str,
              dry_run: bool = False,
              budget_min: float = DEFAULT_BUDGET_MIN,
              start: Optional[float] = None,
              device: Optional[str] = None,
              threads: Optional[int] = None,
              root: Optional[str] = None,
              only: Optional[List[str]] = None,
              log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the suite and write ``suite.json``, ``summary.md``,
    ``report.md`` and every table's ``.md``/``.png``/``.json``.

    Args:
        out_dir (str): Output folder (created).
        dry_run (bool): Every step on the CPU, tiny shapes, one repeat.
        budget_min (float): Minutes for the whole run, counted from
            ``start``.
        start (float, optional): ``time.time()`` at which the run began.
        device (str, optional): Defaults to ``'cpu'`` for a dry run, else
            ``'cuda:0'``.
        threads (int, optional): Torch threads.
        root (str, optional): Repository root. Defaults to the one holding
            this package.
        only (list[str], optional): Run only these steps.
        log (callable): Progress printer.

    Returns:
        dict: The content of ``suite.json``.
    """
    device = device or ('cpu' if dry_run else 'cuda:0')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(
            f'{device} requested but torch {torch.__version__} sees no CUDA '
            f'device; use --dry-run to check the suite on the CPU')
    if threads is not None:
        torch.set_num_threads(threads)
    root = root or osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__))))
    os.makedirs(out_dir, exist_ok=True)
    sizes = DRY_RUN_SIZES if dry_run else GPU_SIZES
    budget = Budget(budget_min * 60, start)
    plan = build_steps(sizes)
    if only:
        unknown = sorted(set(only) - {s.name for s in plan})
        if unknown:
            raise ValueError(f'unknown step(s) {unknown}; choose from '
                             f"{', '.join(s.name for s in plan)}")
        plan = [s for s in plan if s.name in only]
    context = SuiteContext(device, sizes, out_dir, root, dry_run, threads)
    env = environment(device)
    log(f"[suite] {env['device_name']}, torch {env['versions']['torch']}, "
        f"mmcv.ops: {env['mmcv_ops']}, budget {budget.total_s:.0f} s "
        f'({budget.elapsed():.0f} s spent before the suite started)')
    records = run_steps(plan, context, budget, log)
    suite = dict(
        dry_run=dry_run,
        device=device,
        environment=env,
        sizes=asdict(sizes),
        budget=dict(total_s=budget.total_s, elapsed_s=budget.elapsed(),
                    slowdown=budget.slowdown),
        steps=[asdict(r) for r in records])
    with open(osp.join(out_dir, 'suite.json'), 'w') as f:
        json.dump(suite, f, indent=2, default=str)
    summary = format_summary(suite)
    write_report(suite, summary, out_dir)
    log(summary)
    return suite
