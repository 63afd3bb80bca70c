"""Which implementation of ``mmcv.ops`` the detectors use.

mmdet 3.x imports ``mmcv.ops`` (NMS, RoIAlign, deformable convs, ...) in
module scope, so without mmcv's compiled extension (``mmcv._ext``: an mmcv
built with ``MMCV_WITH_OPS=0``, "mmcv-lite") not even a backbone can be
built through mmdet. Compiling the extension costs minutes of CPU (about 11
on 2 cores for the CPU kernels alone; see ``docs/benchmarks.md``), which a
GPU machine lent for a few minutes does not have. torchvision ships the
three ops vovdet's detectors need at test and train time, NMS, batched NMS
and RoIAlign, for CPU and CUDA; mmcv's own ``RoIAlign(use_torchvision=True)``
already delegates to it. :func:`use_torchvision_ops` makes ``mmcv.ops``
(and any ``mmcv.ops.<submodule>``) a stand-in module that implements those
three with mmcv's signatures and return values, and raises a named error
for any other op when it is used (not when it is imported, because mmdet
imports ops it never calls for these detectors).

The choice is made once per process, before mmdet is imported, from the
environment variable ``VOVDET_MMCV_OPS`` (read by ``import vovdet``, so it
also reaches benchmark subprocesses):

* unset or ``mmcv``: mmcv's compiled ops (the default; nothing changes);
* ``torchvision``: always the stand-in;
* ``auto``: the stand-in only when ``mmcv._ext`` cannot be imported.
"""
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

ENV_VAR = 'VOVDET_MMCV_OPS'
MODES = ('mmcv', 'torchvision', 'auto')
STANDIN_NAME = 'vovdet torchvision stand-in'


class MissingMmcvOp(RuntimeError):
    """An op the torchvision stand-in does not provide was used."""


def _missing(name: str) -> type:
    """A placeholder class for op ``name`` that raises when used."""

    def fail(*args: Any, **kwargs: Any) -> None:
        raise MissingMmcvOp(
            f"mmcv.ops.{name} needs mmcv's compiled ops, but this process "
            f'uses the {STANDIN_NAME} ({ENV_VAR}), which provides only nms, '
            f'batched_nms, roi_align and RoIAlign. Install mmcv built with '
            f'MMCV_WITH_OPS=1, or unset {ENV_VAR}.')

    return type(name, (), {'__new__': fail})


def _as_tensors(boxes: Any, scores: Any) -> Tuple[torch.Tensor, torch.Tensor,
                                                  bool]:
    is_numpy = isinstance(boxes, np.ndarray)
    if is_numpy:
        boxes = torch.from_numpy(boxes)
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
    return boxes, scores, is_numpy


def nms(boxes: Any,
        scores: Any,
        iou_threshold: float,
        offset: int = 0,
        score_threshold: float = 0,
        max_num: int = -1) -> Tuple[Any, Any]:
    """mmcv's ``nms`` on ``torchvision.ops.nms``.

    Args:
        boxes (Tensor | ndarray): (N, 4) boxes, x1 y1 x2 y2.
        scores (Tensor | ndarray): (N, ) scores.
        iou_threshold (float): Boxes overlapping a kept one by more are
            removed.
        offset (int): Must be 0 (torchvision has no ``x2 - x1 + 1`` boxes).
        score_threshold (float): Boxes scoring at most this are dropped
            first.
        max_num (int): Keep at most this many (all when <= 0).

    Returns:
        tuple: ``dets`` (K, 5) boxes and scores in decreasing score order
        and ``inds`` (K, ) their indices, of the input's type.
    """
    from torchvision.ops import nms as tv_nms
    if offset != 0:
        raise MissingMmcvOp(
            f'nms with offset={offset}: the {STANDIN_NAME} supports '
            f"offset=0 only; use mmcv's compiled ops")
    boxes, scores, is_numpy = _as_tensors(boxes, scores)
    valid_inds = None
    if score_threshold > 0:
        valid = scores > score_threshold
        valid_inds = valid.nonzero(as_tuple=False).squeeze(1)
        boxes_in, scores_in = boxes[valid], scores[valid]
    else:
        boxes_in, scores_in = boxes, scores
    inds = tv_nms(boxes_in, scores_in, float(iou_threshold))
    if max_num > 0:
        inds = inds[:max_num]
    if valid_inds is not None:
        inds = valid_inds[inds]
    dets = torch.cat((boxes[inds], scores[inds].reshape(-1, 1)), dim=1)
    if is_numpy:
        return dets.cpu().numpy(), inds.cpu().numpy()
    return dets, inds


def batched_nms(boxes: torch.Tensor,
                scores: torch.Tensor,
                idxs: torch.Tensor,
                nms_cfg: Optional[dict],
                class_agnostic: bool = False
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """mmcv's ``batched_nms`` (per-class NMS by coordinate offsets) for
    ``type='nms'``.

    Args:
        boxes (Tensor): (N, 4) boxes.
        scores (Tensor): (N, ) scores.
        idxs (Tensor): (N, ) class of each box; boxes of different classes
            never suppress each other.
        nms_cfg (dict, optional): ``iou_threshold`` and optionally
            ``class_agnostic``, ``max_num``, ``split_thr``,
            ``score_threshold``; None skips NMS (sort only).
        class_agnostic (bool): Ignore ``idxs``.

    Returns:
        tuple: ``dets`` (K, 5) and ``keep`` (K, ), as mmcv returns them.
    """
    if nms_cfg is None:
        scores, inds = scores.sort(descending=True)
        return torch.cat([boxes[inds], scores[:, None]], -1), inds
    cfg = dict(nms_cfg)
    class_agnostic = cfg.pop('class_agnostic', class_agnostic)
    nms_type = cfg.pop('type', 'nms')
    if nms_type not in ('nms', nms):
        raise MissingMmcvOp(
            f"batched_nms with type='{nms_type}': the {STANDIN_NAME} has "
            f"plain 'nms' only; use mmcv's compiled ops")
    # mmcv splits the call per class above split_thr boxes only to bound
    # its kernel's memory; one call over offset boxes keeps the same boxes.
    cfg.pop('split_thr', None)
    max_num = cfg.pop('max_num', -1)
    if class_agnostic or boxes.numel() == 0:
        boxes_for_nms = boxes
    else:
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        boxes_for_nms = boxes + offsets[:, None]
    dets, keep = nms(boxes_for_nms, scores, **cfg)
    if max_num > 0:
        keep = keep[:max_num]
        dets = dets[:max_num]
    return torch.cat([boxes[keep], dets[:, -1:]], -1), keep


def roi_align(input: torch.Tensor,
              rois: torch.Tensor,
              output_size: Any,
              spatial_scale: float = 1.0,
              sampling_ratio: int = 0,
              pool_mode: str = 'avg',
              aligned: bool = True) -> torch.Tensor:
    """mmcv's ``roi_align`` on ``torchvision.ops.roi_align`` (average
    pooling only, as mmdet's heads use it)."""
    from torchvision.ops import roi_align as tv_roi_align
    if pool_mode != 'avg':
        raise MissingMmcvOp(
            f"roi_align with pool_mode='{pool_mode}': the {STANDIN_NAME} "
            f"pools by average only; use mmcv's compiled ops")
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    return tv_roi_align(input, rois, tuple(output_size), spatial_scale,
                        sampling_ratio, aligned)


class RoIAlign(nn.Module):
    """mmcv's ``RoIAlign`` module on :func:`roi_align`.

    Args:
        output_size (int | tuple[int, int]): Height and width of the output.
        spatial_scale (float): Feature map stride as a scale (1 / stride).
        sampling_ratio (int): Samples per bin side; 0 adapts to the roi.
        pool_mode (str): ``'avg'`` only.
        aligned (bool): Shift by half a pixel (Detectron2's alignment).
        use_torchvision (bool): Accepted for mmcv compatibility; always
            torchvision here.
    """

    def __init__(self,
                 output_size: Any,
                 spatial_scale: float = 1.0,
                 sampling_ratio: int = 0,
                 pool_mode: str = 'avg',
                 aligned: bool = True,
                 use_torchvision: bool = True) -> None:
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = aligned

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Pool ``rois`` (K, 5: batch index, x1 y1 x2 y2) from ``input``."""
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.pool_mode, self.aligned)


_PROVIDED = dict(nms=nms, batched_nms=batched_nms, roi_align=roi_align,
                 RoIAlign=RoIAlign)


def _missing_attribute(attr: str) -> type:
    """Module ``__getattr__`` of the stand-in: a placeholder for any op."""
    if attr.startswith('__'):
        raise AttributeError(attr)
    return _missing(attr)


def _standin_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f'{STANDIN_NAME} for {name}')
    module.__dict__.update(_PROVIDED, __getattr__=_missing_attribute,
                           __vovdet_standin__=True)
    return module


class _StandinFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every ``import mmcv.ops.<anything>`` with a stand-in."""

    def find_spec(
            self, fullname: str, path: Any = None, target: Any = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname.startswith('mmcv.ops.'):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec
                      ) -> types.ModuleType:
        return _standin_module(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is complete when created."""


def mmcv_ops_backend() -> str:
    """``'torchvision'`` when the stand-in is installed, else ``'mmcv'``."""
    ops = sys.modules.get('mmcv.ops')
    return 'torchvision' if getattr(ops, '__vovdet_standin__', False) \
        else 'mmcv'


def compiled_ops_importable() -> Tuple[bool, str]:
    """Whether mmcv's compiled extension loads, and if not why."""
    try:
        importlib.import_module('mmcv._ext')
    except Exception as err:  # missing, or built for another torch
        return False, f'{type(err).__name__}: {err}'
    return True, ''


def use_torchvision_ops() -> None:
    """Make ``mmcv.ops`` and its submodules the torchvision stand-in.

    Must run before anything imports ``mmcv.ops`` (mmdet's models do).

    Raises:
        RuntimeError: ``mmcv.ops`` is imported already, or torchvision is
            not installed.
    """
    if mmcv_ops_backend() == 'torchvision':
        return
    if 'mmcv.ops' in sys.modules:
        raise RuntimeError(
            f"mmcv.ops is imported already, so the {STANDIN_NAME} cannot "
            f'replace it: set {ENV_VAR}=torchvision before importing mmdet '
            f'or vovdet')
    try:
        import torchvision.ops  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            f'the {STANDIN_NAME} needs torchvision ({err}); install the '
            f'torchvision matching torch {torch.__version__}') from None
    import mmcv
    standin = _standin_module('mmcv.ops')
    standin.__path__ = []  # a package, so submodule imports reach the finder
    sys.modules['mmcv.ops'] = standin
    mmcv.ops = standin
    sys.meta_path.insert(0, _StandinFinder())


def configure_mmcv_ops(mode: Optional[str] = None) -> str:
    """Apply ``mode`` (default: ``$VOVDET_MMCV_OPS``, else ``'mmcv'``).

    Args:
        mode (str, optional): One of :data:`MODES`.

    Returns:
        str: The backend now in use, ``'mmcv'`` or ``'torchvision'``.
    """
    mode = mode or os.environ.get(ENV_VAR) or 'mmcv'
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}='{mode}' is unknown; choose one of "
                         f"{', '.join(MODES)}")
    if mode == 'torchvision' or (mode == 'auto'
                                 and not compiled_ops_importable()[0]):
        use_torchvision_ops()
    return mmcv_ops_backend()
