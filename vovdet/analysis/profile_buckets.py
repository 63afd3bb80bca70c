"""Split a ``torch.profiler`` recording into buckets of named work.

:data:`BUCKETS` is a table of name patterns. :func:`summarize` walks the
timeline of the recorded thread that did the work: every stretch of time
goes to the first row whose pattern matches an event open at that time
(operator, autograd node, ``record_function`` range, mmcv's custom
autograd functions, or a Python frame when the profiler ran with
``with_stack=True``), the rest to :data:`PYTHON_BUCKET`, so the buckets add
up to the recorded window. The same walk gives each operator's self time.
Used by :mod:`vovdet.analysis.profile_train`.
"""
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

# (bucket, pattern searched in an event's name). Operator and range names
# are PyTorch's (``aten::...``, autograd nodes ``...Backward0``); Python
# frames read ``<path below site-packages>(<line>): <function>``. Order
# matters: time goes to the first row matching any event open then, so
# the mask targets' RoIAlign (``structures/mask``) counts as targets, and a
# convolution's backward kernels as convolution backward.
# Data loading includes mmengine's restart of a finite loader at the end of
# each epoch (``_InfiniteDataloaderIterator.__next__``, which sleeps 2 s).
BUCKETS: Tuple[Tuple[str, str], ...] = (
    ('data loading (waiting for the loader)',
     r'^enumerate\(DataLoader\)|mmengine/runner/loops\.py\(\d+\): __next__$'),
    ('data preprocessor (normalise, pad, stack)', r'data_preprocessors/'),
    ('optimizer step, grad clipping, zero_grad',
     r'^Optimizer\.(step|zero_grad)#|optimizer_wrapper\.py\(\d+\): '
     r'(step|zero_grad)$|nn/utils/clip_grad\.py'),
    ('losses, targets, anchors, assign, sample',
     r'models/losses/|task_modules/(assigners|samplers|coders|'
     r'prior_generators)/|structures/mask/|\): (get_targets|'
     r'_get_targets_single|mask_target|mask_target_single)$'),
    ('RoIAlign backward (mmcv)', r'RoIAlignFunctionBackward'),
    ('RoIAlign forward (mmcv)', r'^RoIAlignFunction$'),
    ('RoIAlign backward (SparseRoIAlign)', r'_SparseProductBackward'),
    ('RoIAlign forward (SparseRoIAlign)',
     r'sparse_roi_align\.py\(\d+\): sparse_roi_align$'),
    ('NMS (mmcv)', r'^NMSop$|^torchvision::nms$'),
    ('convolution backward', r'ConvolutionBackward|^aten::convolution_backw'),
    ('convolution forward',
     r'^aten::(conv2d|conv_transpose2d|convolution|_convolution)$'),
    ('GroupNorm/BatchNorm backward',
     r'(GroupNorm|BatchNorm)Backward|^aten::native_(group|batch)_norm_back'),
    ('GroupNorm/BatchNorm forward',
     r'^aten::(group_norm|batch_norm|native_group_norm|native_batch_norm)$'),
    ('runner hooks (logging, timing, checkpoints)',
     r'^(mmengine|mmdet|vovdet)/(hooks|engine)/|mmengine/runner/'
     r'log_processor\.py|mmengine/logging/'),
    ('other backward (autograd)', r'^autograd::engine::evaluate_function'),
    ('other forward operators', r'^(aten|torchvision|mmcv)::'),
)
PYTHON_BUCKET = 'other Python (no row matches)'
_PATTERNS = tuple(re.compile(p) for _, p in BUCKETS)
# the profiler's event kinds that carry time (not allocations or markers)
_TIMED_TAGS = ('TorchOp', 'PyCall', 'PyCCall', 'Backend')


def bucket_of(name: str) -> Optional[int]:
    """Index of the first row of :data:`BUCKETS` matching ``name``."""
    for i, pattern in enumerate(_PATTERNS):
        if pattern.search(name):
            return i
    return None


@dataclass
class OpTime:
    """One operator name's share of the profiled iterations."""
    name: str
    bucket: str
    calls_per_iter: float
    self_s_per_iter: float


def _name(event) -> str:
    """An event's name; the Python tracer can record a frame whose name
    is not valid UTF-8 (seen with torch 2.13), read as '<unreadable>'."""
    try:
        return event.name
    except UnicodeDecodeError:
        return '<unreadable>'


def _main_thread_events(profiler: torch.profiler.profile) -> list:
    """The timed events of the thread with the most events: the training
    loop's (a data loader's queue thread spans the window as well, idle;
    the profiler numbers threads itself)."""
    by_thread = defaultdict(list)
    stack = list(profiler.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag.name in _TIMED_TAGS:
            by_thread[event.start_tid].append(event)
        stack.extend(event.children)
    return max(by_thread.values(), key=len) if by_thread else []


def _sweep(events, start_ns: int, end_ns: int
           ) -> Tuple[Dict[int, int], Dict[Tuple[str, int], int],
                      Dict[str, int]]:
    """Split ``start_ns``..``end_ns`` among ``events`` along the timeline.

    Every stretch of time goes to the first row of :data:`BUCKETS` that
    matches any event open then (-1: none matches, or none is open) and,
    if an operator is open, to the innermost one (the last opened): its
    self time, as ``key_averages`` counts it. Walking the timeline rather
    than the event tree is needed because ``record_function`` ranges
    (``Optimizer.step#...``, ``enumerate(DataLoader)#...``) open inside one
    Python call and close in another, so they do not nest.

    Returns:
        tuple: ns per bucket index; ns per (operator, bucket index); calls
        of each operator that started in the window.
    """
    marks = []
    for i, event in enumerate(events):
        begin = max(event.start_time_ns, start_ns)
        end = min(event.end_time_ns, end_ns)
        if end > begin:
            # at equal times, close (0) before opening (1)
            marks.append((begin, 1, i))
            marks.append((end, 0, i))
    marks.sort()
    names = [_name(e) for e in events]
    buckets = [bucket_of(n) for n in names]
    is_op = [e.tag.name == 'TorchOp' for e in events]
    open_count = [0] * len(BUCKETS)
    open_ops: List[int] = []
    per_bucket: Dict[int, int] = defaultdict(int)
    per_op: Dict[Tuple[str, int], int] = defaultdict(int)
    calls: Dict[str, int] = defaultdict(int)
    now = start_ns
    for time_ns, opens, i in marks + [(end_ns, 0, -1)]:
        if time_ns > now:
            index = next((b for b, n in enumerate(open_count) if n), -1)
            per_bucket[index] += time_ns - now
            if open_ops:
                per_op[(names[open_ops[-1]], index)] += time_ns - now
            now = time_ns
        if i < 0:
            break
        if buckets[i] is not None:
            open_count[buckets[i]] += 1 if opens else -1
        if is_op[i]:
            if opens:
                open_ops.append(i)
                calls[names[i]] += 1
            else:
                open_ops.remove(i)
    return per_bucket, per_op, calls


def summarize(profiler: torch.profiler.profile, window_ns: Tuple[int, int],
              iters: int, top: int = 15
              ) -> Tuple[Dict[str, float], List[OpTime]]:
    """Bucket times and the ``top`` operators, in seconds per iteration.

    Args:
        profiler (torch.profiler.profile): A stopped profiler.
        window_ns (tuple[int, int]): Start and end of the profiled
            iterations (``time.time_ns()``); what no event covers goes to
            :data:`PYTHON_BUCKET`.
        iters (int): Iterations it recorded.
        top (int): How many operators to list.
    """
    per_bucket, per_op, calls = _sweep(_main_thread_events(profiler),
                                       *window_ns)
    names = [name for name, _ in BUCKETS]
    buckets = {name: per_bucket.get(i, 0) / 1e9 / iters
               for i, name in enumerate(names)}
    buckets[PYTHON_BUCKET] = per_bucket.get(-1, 0) / 1e9 / iters
    by_name: Dict[str, Dict[int, int]] = defaultdict(dict)
    for (name, index), ns in per_op.items():
        by_name[name][index] = ns
    ops = []
    for name, parts in by_name.items():
        main = max(parts, key=parts.get)
        ops.append(OpTime(
            name=name,
            bucket=PYTHON_BUCKET if main == -1 else names[main],
            calls_per_iter=calls[name] / iters,
            self_s_per_iter=sum(parts.values()) / 1e9 / iters))
    ops.sort(key=lambda op: op.self_s_per_iter, reverse=True)
    return buckets, ops[:top]
