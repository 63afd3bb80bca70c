"""Where the time of a training iteration goes.

The runner is built from the config exactly as ``tools/train.py`` builds it
(:func:`vovdet.apis.common.load_config` and
:func:`~vovdet.apis.common.build_runner`) and trains as configured: data
loader, data preprocessor, forward, losses, backward, optimizer step and
the runner's hooks. After ``warmup`` iterations, ``torch.profiler`` records
the next ``iters`` ones, from the end of the last warm-up iteration's hooks
to the end of the last profiled iteration's hooks, so the window holds
whole iterations, waiting for the data loader included; then training
stops.

With ``python_tracer`` (the default) the profiler also records every
Python call (``with_stack=True``), so the recorded events cover the whole
window: PyTorch operators, autograd nodes, ``record_function`` ranges
(``enumerate(DataLoader)#...``, ``Optimizer.step#SGD.step``), custom
autograd functions (mmcv's ``RoIAlignFunction``, ``NMSop``, whose C++
kernels are not PyTorch operators and are timed as the function's own
time) and the Python frames around them.
:mod:`vovdet.analysis.profile_buckets` splits the window into the buckets
of its table of name patterns (``BUCKETS``); they add up to the window,
and their shares to 100 %.

The buckets split wall-clock time; on a machine shared with other jobs it
includes the time the process waited for a core. The profiler slows
Python-heavy code more than operator-heavy code, so the shares are of the
profiled iterations, and ``s/iter without profiler`` (the median of the
warm-up iterations after the first) is the speed to quote; its CPU time
(this process and its data-loader workers) is the one to compare between
runs on a shared machine, with one thread.
"""
import argparse
import datetime
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook

from .profile_buckets import OpTime, summarize


@dataclass
class ProfileResult:
    """The profile of ``iters`` training iterations of ``config``.

    Times are per iteration. ``wall_s`` and ``cpu_s`` are wall-clock and
    CPU seconds (this process's threads plus the data loader's worker
    processes) without the profiler, the medians of the warm-up iterations
    after the first (None when ``warmup`` < 2); ``*_profiled`` the same
    over the profiled iterations. ``buckets`` maps each bucket (see
    :mod:`~vovdet.analysis.profile_buckets`) to wall-clock seconds of the
    profiled iterations; ``top_ops`` lists the operators with the most self
    time (their own time, less the operators they call; custom autograd
    functions include their C++ kernels).
    """
    config: str
    cfg_options: List[str]
    iters: int
    warmup: int
    threads: int
    python_tracer: bool
    wall_s: Optional[float]
    cpu_s: Optional[float]
    wall_s_profiled: float
    cpu_s_profiled: float
    buckets: Dict[str, float]
    top_ops: List[OpTime]
    machine: str = ''
    date: str = ''
    torch_version: str = ''
    load_average: Tuple[float, ...] = (0.0, 0.0, 0.0)

    def share(self, bucket: str) -> float:
        """``bucket``'s percentage of the profiled iterations."""
        total = sum(self.buckets.values())
        return 100.0 * self.buckets[bucket] / total if total else 0.0


def _stat_cpu_seconds(pid: str) -> float:
    """User + system CPU seconds of process ``pid`` from /proc/PID/stat."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # fields 14 and 15 of proc(5), counted after the ``(comm)`` field
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and by its
    running child processes (a data loader's workers).

    The children are read from ``/proc/self/task/*/children`` (Linux);
    where that is missing, or a child has just ended, only this process
    counts.
    """
    total = time.process_time()
    tasks = '/proc/self/task'
    if not os.path.isdir(tasks):
        return total
    for tid in os.listdir(tasks):
        try:
            with open(f'{tasks}/{tid}/children') as f:
                pids = f.read().split()
            total += sum(_stat_cpu_seconds(pid) for pid in pids)
        except OSError:
            continue
    return total


class ProfileWindowError(ValueError):
    """Training ended before the profiled iterations were done."""


class _ProfileDone(Exception):
    """Raised by :class:`ProfileWindowHook` to end training after the
    profiled iterations (works for iteration- and epoch-based loops)."""


class ProfileWindowHook(Hook):
    """Profile training iterations ``warmup`` to ``warmup + iters - 1``.

    Called after every other hook (lowest priority), it starts the profiler
    when iteration ``warmup - 1`` has finished, stops it when iteration
    ``warmup + iters - 1`` has, then ends training. It notes the wall-clock
    and CPU time (:func:`cpu_seconds`) at the end of each iteration
    (``marks``) and at both ends of the profiled window (``window``).
    """

    priority = 'LOWEST'

    def __init__(self, warmup: int, iters: int, python_tracer: bool = True):
        self.warmup = warmup
        self.iters = iters
        self.python_tracer = python_tracer
        self.marks: List[Tuple[float, float]] = []
        self.window: List[Tuple[float, float]] = []
        # the window on the profiler's clock (ns since the epoch)
        self.window_ns: Tuple[int, int] = (0, 0)
        self.profiler: Optional[torch.profiler.profile] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self.marks.append((time.perf_counter(), cpu_seconds()))
        done = len(self.marks)
        if done == self.warmup:
            self.profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU],
                with_stack=self.python_tracer)
            self.profiler.start()
            self.window.append((time.perf_counter(), cpu_seconds()))
            self.window_ns = (time.time_ns(), 0)
        elif done == self.warmup + self.iters:
            self.window_ns = (self.window_ns[0], time.time_ns())
            self.window.append(self.marks[-1])
            self.profiler.stop()
            raise _ProfileDone

    def after_train(self, runner) -> None:
        if self.profiler is not None and len(self.marks) < (self.warmup +
                                                            self.iters):
            self.profiler.stop()


def _machine() -> str:
    """The CPU model (:func:`vovdet.analysis.benchmark.device_name`) and the
    logical core count."""
    from .benchmark import device_name
    return f"{device_name(torch.device('cpu'))}, {os.cpu_count()} logical cores"


def profile_training(config: str,
                     iters: int = 20,
                     warmup: int = 5,
                     threads: Optional[int] = None,
                     cfg_options: Optional[Dict[str, Any]] = None,
                     work_dir: Optional[str] = None,
                     python_tracer: bool = True,
                     top: int = 15) -> ProfileResult:
    """Train ``config`` for ``warmup`` iterations, then profile ``iters``.

    Args:
        config (str): Config file, as ``tools/train.py`` takes it.
        iters (int): Iterations to profile (>= 1).
        warmup (int): Iterations before them (>= 1: the first one starts
            the data loader's workers and allocates everything).
        threads (int, optional): ``torch.set_num_threads``; None keeps
            PyTorch's default.
        cfg_options (dict, optional): Config overrides, as
            ``--cfg-options`` of ``tools/train.py`` parses them.
        work_dir (str, optional): Where the runner writes its logs; a
            temporary folder, removed afterwards, when None.
        python_tracer (bool): Record Python calls too (see the module
            docstring); without it, time in Python is not split into
            buckets (losses, targets, optimizer clipping, hooks).
        top (int): How many operators to list.

    Returns:
        ProfileResult: Times per iteration, with and without the profiler,
        and the buckets and operators they split into.
    """
    from vovdet.apis.common import build_runner, load_config
    from vovdet.utils import check_dataset_files

    if iters < 1:
        raise ValueError(f'iters={iters}: profile at least 1 iteration '
                         '(--iters)')
    if warmup < 1:
        raise ValueError(f'warmup={warmup}: run at least 1 warm-up '
                         'iteration (--warmup); the first starts the data '
                         'loader and allocates the buffers')
    if threads is not None:
        torch.set_num_threads(threads)
    load_average = os.getloadavg() if hasattr(os, 'getloadavg') else (
        0.0, 0.0, 0.0)
    with tempfile.TemporaryDirectory(prefix='profile_train_') as tmp:
        args = argparse.Namespace(launcher='none', local_rank=0,
                                  cfg_options=dict(cfg_options or {}),
                                  work_dir=work_dir or tmp)
        cfg = load_config(config, args)
        # Training iterations only: the loop would also validate between
        # them every val_interval; without val_* the runner builds no
        # validation loop.
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        check_dataset_files(cfg, splits=('train', ))
        runner = build_runner(cfg)
        hook = ProfileWindowHook(warmup, iters, python_tracer)
        runner.register_hook(hook)
        try:
            runner.train()
        except _ProfileDone:
            pass
        else:
            raise ProfileWindowError(
                f'training of {config} ended after {len(hook.marks)} '
                f'iterations, before {warmup} warm-up + {iters} profiled '
                'ones: lower --warmup/--iters or raise train_cfg.max_iters')
        finally:
            del runner
    marks = hook.marks
    buckets, top_ops = summarize(hook.profiler, hook.window_ns, iters, top)
    warm = [(b[0] - a[0], b[1] - a[1])
            for a, b in zip(marks[:warmup - 1], marks[1:warmup])]
    first, last = hook.window
    return ProfileResult(
        config=config,
        cfg_options=[f'{k}={v}' for k, v in (cfg_options or {}).items()],
        iters=iters,
        warmup=warmup,
        threads=torch.get_num_threads(),
        python_tracer=python_tracer,
        wall_s=statistics.median(w for w, _ in warm) if warm else None,
        cpu_s=statistics.median(c for _, c in warm) if warm else None,
        wall_s_profiled=(last[0] - first[0]) / iters,
        cpu_s_profiled=(last[1] - first[1]) / iters,
        buckets=buckets,
        top_ops=top_ops,
        machine=_machine(),
        date=datetime.date.today().isoformat(),
        torch_version=torch.__version__,
        load_average=tuple(round(x, 2) for x in load_average))


def format_report(result: ProfileResult) -> str:
    """A markdown report: settings, s/iter, the bucket table (with % of the
    profiled iterations) and the top operators."""
    r = result
    unprofiled = ('n/a (needs --warmup >= 2)' if r.wall_s is None else
                  f'{r.wall_s:.3f} s wall, {r.cpu_s:.3f} s CPU (median '
                  f'of the {r.warmup - 1} warm-up iterations after the '
                  'first)')
    lines = [
        f'# Training-iteration profile: {r.config}',
        '',
        f'- date {r.date}; {r.machine}; torch {r.torch_version}, '
        f'{r.threads} intra-op thread(s); load average at start '
        f'{r.load_average[0]:.2f} {r.load_average[1]:.2f} '
        f'{r.load_average[2]:.2f}',
        f"- cfg options: {' '.join(r.cfg_options) or '(none)'}",
        f'- {r.warmup} warm-up + {r.iters} profiled iterations; Python '
        f"tracer {'on' if r.python_tracer else 'off'}",
        f'- s/iter without profiler: {unprofiled}',
        f'- s/iter profiled: {r.wall_s_profiled:.3f} s wall, '
        f'{r.cpu_s_profiled:.3f} s CPU',
        '- CPU = this process\'s threads + the data loader\'s workers; '
        'the buckets split the profiled wall-clock time',
        '',
        '| bucket | s/iter | % |',
        '|---|---:|---:|',
    ]
    for name, seconds in sorted(r.buckets.items(), key=lambda kv: -kv[1]):
        lines.append(f'| {name} | {seconds:.4f} | {r.share(name):.1f} |')
    lines.append(f'| total | {sum(r.buckets.values()):.4f} | '
                 f'{sum(r.share(b) for b in r.buckets):.1f} |')
    total = sum(r.buckets.values())
    lines += [
        '',
        f'Top {len(r.top_ops)} operators by self time:',
        '',
        '| operator | bucket | calls/iter | self s/iter | % |',
        '|---|---|---:|---:|---:|',
    ]
    for op in r.top_ops:
        share = 100.0 * op.self_s_per_iter / total if total else 0.0
        lines.append(f'| `{op.name}` | {op.bucket} | {op.calls_per_iter:g} '
                     f'| {op.self_s_per_iter:.4f} | {share:.1f} |')
    return '\n'.join(lines) + '\n'


def build_parser() -> argparse.ArgumentParser:
    from vovdet.apis.common import add_cfg_options
    parser = argparse.ArgumentParser(
        description='Profile training iterations of a config with '
        'torch.profiler and report where their time goes')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--iters', type=int, default=20,
                        help='iterations to profile (default 20)')
    parser.add_argument('--warmup', type=int, default=5,
                        help='iterations before them (default 5)')
    parser.add_argument('--threads', type=int,
                        help='torch intra-op threads (default: torch\'s)')
    parser.add_argument(
        '--data-root',
        help="point the config's train/val/test data and evaluators at this "
        'folder (as tools/run_demo.py does)')
    parser.add_argument(
        '--no-python-tracer', action='store_true',
        help='record operators only (time in Python, e.g. losses, targets '
        'and hooks, is then not split into buckets)')
    parser.add_argument('--work-dir',
                        help='runner logs (default: a temporary folder)')
    parser.add_argument('--out', help='also write the report to this .md')
    add_cfg_options(parser, 'before building the runner')
    return parser


def main(argv: Optional[List[str]] = None) -> ProfileResult:
    """``tools/analysis/profile_train.py``: profile, print the report."""
    from vovdet.apis.demo import data_root_overrides
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 1:
        parser.error('--iters and --warmup must be at least 1 (the first '
                     'iteration starts the data loader and allocates the '
                     'buffers, so it is never profiled)')
    options = data_root_overrides(args.data_root) if args.data_root else {}
    options.update(args.cfg_options or {})
    try:
        result = profile_training(
            args.config, iters=args.iters, warmup=args.warmup,
            threads=args.threads, cfg_options=options,
            work_dir=args.work_dir, python_tracer=not args.no_python_tracer)
    except ProfileWindowError as e:
        raise SystemExit(f'error: {e}') from None
    report = format_report(result)
    print(report, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)),
                    exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(report)
    return result
