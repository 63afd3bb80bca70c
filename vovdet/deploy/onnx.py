"""ONNX export of whole detectors, and running them under ONNX Runtime.

:func:`export_onnx` traces a detector family's export wrapper
(:class:`~vovdet.deploy.refinedet.RefineDetExport`,
:class:`~vovdet.deploy.dsod.DSODExport`,
:class:`~vovdet.deploy.mask_rcnn.MaskRCNNExport`) around the detector in
its inference form, so the graph takes a preprocessed ``(1, 3, H, W)``
image and returns the final ``boxes``, ``scores``, ``labels`` (and
``masks``), then checks the graph under ONNX Runtime against PyTorch on the
example image.

The exporter is torch's TorchScript-based one (``torch.onnx.export(...,
dynamo=False)``): the export wrappers are plain traceable modules with two
custom ops whose ``symbolic`` writes ``NonMaxSuppression`` and ``RoiAlign``,
which that exporter supports as is. torch 2.13's default, the
``torch.export``-based exporter, needs the ``onnxscript`` package and would
need those two ops re-registered as onnxscript functions.

Needs the ``deploy`` extra (``pip install -e .[deploy]``: onnx and
onnxruntime); :func:`require` names it when a package is missing.
"""
import importlib
import os
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .base import DetectorExport
from .dsod import DSODExport
from .inference_form import InferenceForm, feature_check, to_inference_form
from .mask_rcnn import MaskRCNNExport
from .ops import ExportError
from .refinedet import RefineDetExport

EXPORT_WRAPPERS = (RefineDetExport, DSODExport, MaskRCNNExport)
DEFAULT_OPSET = 17
# How close ONNX Runtime's detections must be to PyTorch's (fp32 kernels
# differ in summation order): boxes relative to the largest coordinate,
# scores absolute, masks by IoU.
BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-4
MASK_IOU = 0.99


class MissingDeployDependency(ImportError):
    """onnx or onnxruntime is not installed."""


def require(name: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, naming the extra when missing."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise MissingDeployDependency(
            f"ONNX export and ONNX Runtime need the '{name}' package of "
            f"vovdet's 'deploy' extra: pip install -e '.[deploy]' (or "
            f'pip install onnx onnxruntime); {err}') from None


def export_wrapper(detector: nn.Module) -> DetectorExport:
    """The export wrapper of ``detector``'s family.

    Raises:
        ExportError: No family exports it.
    """
    for wrapper in EXPORT_WRAPPERS:
        if wrapper.supports(detector):
            return wrapper(detector)
    families = ', '.join(w.family for w in EXPORT_WRAPPERS)
    raise ExportError(f'{type(detector).__name__} has no ONNX export; the '
                      f'exported families are {families}')


def default_shape(cfg: Any) -> Tuple[int, int]:
    """``(H, W)`` of the config's test ``Resize`` scale, padded to the data
    preprocessor's ``pad_size_divisor`` (for ``keep_ratio`` the largest
    image the scale allows).

    Raises:
        ExportError: The test pipeline has no ``Resize`` with a ``scale``.
    """
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline', [])
    scales = [t['scale'] for t in pipeline
              if t.get('type') == 'Resize' and 'scale' in t]
    if not scales:
        raise ExportError('the config has no test Resize scale to export '
                          'at; pass --shape H W')
    width, height = scales[0]
    if any(t.get('keep_ratio') for t in pipeline if t.get('type') ==
           'Resize'):
        height, width = sorted((height, width))
    divisor = cfg.model.get('data_preprocessor', {}).get(
        'pad_size_divisor', 1)
    return tuple(-(-s // divisor) * divisor for s in (height, width))


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and checked.

    Attributes:
        path (str): The ONNX file.
        family (str): The detector family.
        shape (tuple[int, int]): ``(H, W)`` of the example input.
        dynamic (bool): Height and width are dynamic axes.
        opset (int): The ONNX opset.
        output_names (list[str]): The graph's outputs, in order.
        inference_form (str): What :func:`to_inference_form` did.
        parity (str): How ONNX Runtime's detections on the example image
            agree with PyTorch's (:class:`Parity`).
        parity_ok (bool): Within :data:`BOX_TOLERANCE`,
            :data:`SCORE_TOLERANCE` and :data:`MASK_IOU`.
        providers (dict[str, str]): Per ONNX Runtime execution provider
            tried, ``'ok'`` or why it could not run.
    """
    path: str
    family: str
    shape: Tuple[int, int]
    dynamic: bool
    opset: int
    output_names: List[str]
    inference_form: str
    parity: str
    parity_ok: bool
    providers: Dict[str, str] = field(default_factory=dict)


def example_image(shape: Tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A fixed preprocessed-looking ``(1, 3, H, W)`` image."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((1, 3, *shape), generator=gen)


def trace_to_onnx(wrapper: DetectorExport,
                  image: torch.Tensor,
                  out: str,
                  dynamic: bool = False,
                  opset: int = DEFAULT_OPSET) -> None:
    """``torch.onnx.export`` of ``wrapper`` on ``image`` (TorchScript
    exporter), with the input ``image`` and the wrapper's named outputs.

    Raises:
        ExportError: ``opset`` is below what the family needs.
    """
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    if not wrapper.min_opset <= opset <= ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET:
        raise ExportError(
            f'{wrapper.family} exports with opset {wrapper.min_opset} to '
            f'{ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET}, got --opset {opset}')
    axes = {name: {0: 'detections'} for name in wrapper.output_names}
    if dynamic:
        axes['image'] = {2: 'height', 3: 'width'}
        if 'masks' in axes:
            axes['masks'].update({1: 'height', 2: 'width'})
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with warnings.catch_warnings():
        # the trace warns about every size it reads; sizes that must stay
        # dynamic are tensors (vovdet.deploy.ops), and the export is checked
        warnings.simplefilter('ignore')
        torch.onnx.export(
            wrapper, (image, ),
            out,
            dynamo=False,
            opset_version=opset,
            input_names=['image'],
            output_names=list(wrapper.output_names),
            dynamic_axes=axes)


class OnnxDetector:
    """An exported detector under ONNX Runtime.

    Args:
        path (str): The ONNX file.
        providers (Sequence[str], optional): Execution providers, in order
            of preference. Defaults to ``['CPUExecutionProvider']``.
        threads (int, optional): Intra-op threads; None keeps ONNX
            Runtime's default.
    """

    def __init__(self,
                 path: str,
                 providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None) -> None:
        ort = require('onnxruntime')
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            path,
            sess_options=options,
            providers=list(providers or ['CPUExecutionProvider']))
        self.output_names = [o.name for o in self.session.get_outputs()]
        dims = self.session.get_inputs()[0].shape[-2:]
        # (H, W) of a fixed-size graph; None when either is dynamic
        self.input_size = tuple(dims) if all(
            isinstance(d, int) for d in dims) else None

    def __call__(self, image: Any) -> Dict[str, np.ndarray]:
        """Run on a ``(1, 3, H, W)`` float image (tensor or array)."""
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        outputs = self.session.run(
            None, {'image': np.ascontiguousarray(image, dtype=np.float32)})
        return dict(zip(self.output_names, outputs))


@dataclass
class Parity:
    """How two sets of detections of one image agree
    (:func:`compare_detections`).

    Attributes:
        counts (tuple[int, int]): Detections in the reference and the other.
        unmatched (int): Reference detections with no detection of the same
            label and a score within :data:`SCORE_TOLERANCE` in the other.
        box_rel_diff (float): Largest box coordinate difference of the
            matched pairs over the largest reference coordinate.
        score_diff (float): Largest score difference of the matched pairs.
        mask_iou (float, optional): Smallest mask IoU of the matched pairs;
            None without masks.
    """
    counts: Tuple[int, int]
    unmatched: int
    box_rel_diff: float
    score_diff: float
    mask_iou: Optional[float] = None

    @property
    def ok(self) -> bool:
        """Within every tolerance."""
        return (self.counts[0] == self.counts[1] and not self.unmatched
                and self.box_rel_diff <= BOX_TOLERANCE
                and self.score_diff <= SCORE_TOLERANCE
                and (self.mask_iou is None or self.mask_iou >= MASK_IOU))

    def __str__(self) -> str:
        text = (f'{self.counts[0]} vs {self.counts[1]} detections, '
                f'{self.unmatched} unmatched, boxes within '
                f'{self.box_rel_diff:.1e} (relative), scores within '
                f'{self.score_diff:.1e}')
        if self.mask_iou is not None:
            text += f', mask IoU >= {self.mask_iou:.4f}'
        return text


def _as_numpy(outputs: Dict[str, Any]) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else
            np.asarray(v) for k, v in outputs.items()}


def compare_detections(reference: Dict[str, Any],
                       other: Dict[str, Any]) -> Parity:
    """Match two detectors' outputs on one image, detection by detection.

    Both lists are sorted best first, but equal scores (a saturated softmax
    gives many) may come in either order, so each reference detection is
    paired with the unused detection of the same label, a score within
    :data:`SCORE_TOLERANCE` and the closest box.

    Args:
        reference (dict): ``boxes``, ``scores``, ``labels`` (and ``masks``)
            as tensors or arrays, e.g. PyTorch's.
        other (dict): The same keys, e.g. ONNX Runtime's.

    Returns:
        Parity: Counts, unmatched detections and the largest differences.
    """
    ref, new = _as_numpy(reference), _as_numpy(other)
    used = np.zeros(len(new['scores']), dtype=bool)
    scale = float(np.abs(ref['boxes']).max()) if len(ref['boxes']) else 1.0
    unmatched, box_diff, score_diff, mask_iou = 0, 0.0, 0.0, None
    if 'masks' in ref:
        mask_iou = 1.0
    for i, (box, score, label) in enumerate(
            zip(ref['boxes'], ref['scores'], ref['labels'])):
        candidates = np.nonzero(~used & (new['labels'] == label) & (
            np.abs(new['scores'] - score) <= SCORE_TOLERANCE))[0]
        if not len(candidates):
            unmatched += 1
            continue
        gaps = np.abs(new['boxes'][candidates] - box).max(1)
        j = candidates[gaps.argmin()]
        used[j] = True
        box_diff = max(box_diff, float(gaps.min()) / (scale or 1.0))
        score_diff = max(score_diff, float(abs(new['scores'][j] - score)))
        if mask_iou is not None:
            union = np.logical_or(ref['masks'][i], new['masks'][j]).sum()
            inter = np.logical_and(ref['masks'][i], new['masks'][j]).sum()
            mask_iou = min(mask_iou, float(inter / union) if union else 1.0)
    return Parity((len(ref['scores']), len(new['scores'])), unmatched,
                  box_diff, score_diff, mask_iou)


GPU_PROVIDERS = ('CUDAExecutionProvider', 'TensorrtExecutionProvider')


def try_provider(path: str, image: torch.Tensor,
                 provider: str) -> Optional[str]:
    """Run the graph once under ``provider``: None when it ran there, else
    why not (not available, failed, fell back to another provider)."""
    ort = require('onnxruntime')
    available = ort.get_available_providers()
    if provider not in available:
        return (f'not available in onnxruntime {ort.__version__} '
                f"(providers: {', '.join(available)})")
    try:
        session = OnnxDetector(path, [provider])
        session(image)
    except Exception as err:  # noqa: BLE001 (reported, not raised)
        return f'failed: {type(err).__name__}: {err}'
    used = session.session.get_providers()[0]
    return None if used == provider else f'fell back to {used}'


def provider_report(path: str, image: torch.Tensor) -> Dict[str, str]:
    """Try the graph under the GPU execution providers (CUDA, TensorRT):
    ``'ok'``, or why one could not run, instead of failing."""
    return {provider: try_provider(path, image, provider) or 'ok'
            for provider in GPU_PROVIDERS}


def export_onnx(model: nn.Module,
                out: str,
                shape: Tuple[int, int],
                dynamic: bool = False,
                opset: int = DEFAULT_OPSET,
                fold_bn: bool = True,
                gpu_providers: bool = True) -> ExportResult:
    """Export a detector, post-processing included, and check the graph.

    The model is turned into its inference form
    (:func:`~vovdet.deploy.to_inference_form`, checked on a random image of
    ``shape``), wrapped by its family's export wrapper, traced on a random
    image of ``shape`` and written to ``out``; ONNX's checker validates the
    file, and ONNX Runtime (CPU) runs it on that image: a different number
    of detections than PyTorch's stops the export; how close the detections
    are (:func:`compare_detections`) is reported, with ``parity_ok`` for
    the tests' tolerances (boxes :data:`BOX_TOLERANCE` relative, scores
    :data:`SCORE_TOLERANCE`, masks IoU :data:`MASK_IOU`). Those hold for
    the tested models; an untrained deep network can differ more, because
    float32 kernels sum in another order and its outputs are that sensitive
    (the VoVNet-39 RefineDet320 at initialisation: features change by
    2.5e-4 between float32 and float64 in PyTorch alone). With ``gpu_providers`` the CUDA
    and TensorRT providers are tried as well and their outcome reported.

    Args:
        model (nn.Module): A trained mmdet detector (converted in place).
        out (str): The ONNX file to write.
        shape (tuple[int, int]): ``(H, W)`` of the example input; the fixed
            input size unless ``dynamic``.
        dynamic (bool): Make the input height and width dynamic axes.
        opset (int): ONNX opset. Defaults to :data:`DEFAULT_OPSET`.
        fold_bn (bool): Fold BatchNorms into convs. Defaults to True.
        gpu_providers (bool): Try CUDA and TensorRT. Defaults to True.

    Returns:
        ExportResult: What was written and checked.

    Raises:
        ExportError: The family, a setting or the opset cannot be exported,
            or ONNX Runtime finds another number of detections.
        MissingDeployDependency: onnx or onnxruntime is missing.
    """
    onnx = require('onnx')
    require('onnxruntime')
    wrapper = export_wrapper(model)
    form: InferenceForm = to_inference_form(
        model, fold_bn=fold_bn, check=feature_check(model, shape))
    image = example_image(shape).to(next(model.parameters()).device)
    with torch.no_grad():
        reference = wrapper(image)
    trace_to_onnx(wrapper, image, out, dynamic, opset)
    onnx.checker.check_model(out)
    parity = compare_detections(
        dict(zip(wrapper.output_names, reference)),
        OnnxDetector(out)(image.cpu()))
    if parity.counts[0] != parity.counts[1]:
        raise ExportError(f'ONNX Runtime differs from PyTorch on the example '
                          f'image: {parity}')
    return ExportResult(
        path=out,
        family=wrapper.family,
        shape=tuple(shape),
        dynamic=dynamic,
        opset=opset,
        output_names=list(wrapper.output_names),
        inference_form=str(form),
        parity=str(parity),
        parity_ok=parity.ok,
        providers=provider_report(out, image.cpu()) if gpu_providers else {})


def load_config(config: str, cfg_options: Optional[dict] = None) -> Any:
    """The config with ``cfg_options`` merged, our modules registered and
    mmdet as the default scope."""
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import vovdet  # noqa: F401  (registers our modules)
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_detector(config: str,
                   checkpoint: Optional[str] = None,
                   cfg_options: Optional[dict] = None) -> Tuple[nn.Module,
                                                                Any]:
    """Build a config's detector in eval mode and load its checkpoint
    (through the safe loader); returns ``(model, cfg)``."""
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint

    cfg = load_config(config, cfg_options)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval(), cfg
