"""The inference form of a trained model: one place for every transform
that changes how a network computes but not what it computes.

* **branch fusion**: every outermost module with a ``switch_to_deploy()``
  method (a RepVGG backbone, an OSA-FPN neck with RepVGG layers) folds its
  training branches into single convs (:func:`reparameterize_model`);
* **conv-BN folding**: every BatchNorm that directly follows a conv is
  folded into that conv (:func:`fold_conv_bn`); GroupNorm normalises with
  per-image statistics and stays;
* **channels-last**: weights in the NHWC memory format (the caller converts
  its inputs too).

:func:`to_inference_form` applies them and, given a check call, compares the
model's output before and after: a BN is folded into the conv registered
just before it, which is wrong for a BN applied *before* that conv, so a
transform that changes the output is refused rather than trusted. It is
what ``tools/test.py --deploy`` (:class:`InferenceFormHook`), the
benchmarks and the ONNX exporter run. The checkpoint tool
(``tools/reparameterize.py``, :mod:`vovdet.deploy.reparameterize`) writes
only the branch fusion: a config can build a fused RepVGG (``deploy=True``)
but has no switch for a conv whose BN was folded away.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.nn.modules.batchnorm import _BatchNorm

from vovdet.models.layers.repvgg_block import fuse_conv_norm

# Largest relative output change a transform may cause (fp32 folding of BN
# statistics; RepVGG's own tests reach ~1e-6).
TRANSFORM_TOLERANCE = 1e-3


class ReparameterizationError(ValueError):
    """A model, config or checkpoint that cannot be re-parameterised."""


def deployable_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The outermost submodules that have a ``switch_to_deploy()`` method.

    A RepVGG backbone is returned as one module, not as its blocks: its own
    ``switch_to_deploy()`` converts them all or, on error, none. A module
    whose ``reparameterizable`` attribute is False (an OSA-FPN neck built
    without RepVGG layers) has nothing to fold and is skipped; its
    submodules are searched as usual.

    Args:
        model (nn.Module): A detector (or any module).

    Returns:
        list[tuple[str, nn.Module]]: ``(qualified name, module)`` pairs in
        registration order; the name is ``''`` for ``model`` itself.
    """
    found: List[Tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(f'{outer}.') or outer == ''
               for outer, _ in found):
            continue
        if (callable(getattr(module, 'switch_to_deploy', None))
                and getattr(module, 'reparameterizable', True)):
            found.append((name, module))
    return found


def reparameterize_model(model: nn.Module) -> List[str]:
    """Convert every deployable submodule of ``model`` in place.

    Folding uses the norm layers' running statistics, so the converted
    model equals the original in ``eval()`` mode. A detector has one
    deployable module per re-parameterisable part (a RepVGG backbone, a
    RepVGG OSA-FPN neck); each converts all-or-nothing
    (every fused kernel is computed before any block changes). With several
    deployable modules, those before a failing one stay converted.

    Args:
        model (nn.Module): A detector, possibly wrapped (DDP).

    Returns:
        list[str]: Qualified names of the converted modules.

    Raises:
        ReparameterizationError: ``model`` has nothing to convert, or a
            module holds a norm that cannot be folded (GroupNorm); the
            message names the module and, inside it, the layer.
    """
    if is_model_wrapper(model):
        model = model.module
    targets = deployable_modules(model)
    if not targets:
        raise ReparameterizationError(
            f'{type(model).__name__} has no module with switch_to_deploy() '
            f'(e.g. a RepVGG backbone); there is nothing to re-parameterise')
    for name, module in targets:
        try:
            module.switch_to_deploy()
        except ValueError as err:
            where = f"model.{name}" if name else 'the model'
            raise ReparameterizationError(
                f'cannot re-parameterise {where} '
                f'({type(module).__name__}): {err} Weights trained with '
                f'GroupNorm cannot be converted: train with '
                f"model.{name or 'backbone'}.norm_cfg=dict(type='SyncBN') "
                f"or dict(type='BN').") from err
    return [name for name, _ in targets]


def fold_conv_bn(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a conv into that conv.

    "Follows" means registered right after a ``Conv2d`` with as many output
    channels, in the same parent module, and, in an mmcv ``ConvModule``,
    applied right after it by the module's ``order`` (mmcv's
    ``fuse_conv_bn`` folds across other children, ignores the channel count
    and the order, and so crashes on, or silently breaks, DSOD's
    pre-activation ``norm-act-conv`` layers). The conv gets ``W * gamma /
    sigma`` and a bias (:func:`~vovdet.models.layers.repvgg_block.
    fuse_conv_norm`, the RepVGG fusion's own function), the BN becomes
    ``nn.Identity``, in place. Registration order is not call order (a
    pre-activation BN may be registered after the conv it precedes), so
    :func:`to_inference_form` checks the output. GroupNorm cannot be folded
    (it normalises with per-image statistics) and is left alone.

    Args:
        model (nn.Module): Model in eval mode.

    Returns:
        int: Number of BatchNorm layers folded.
    """
    folded = 0
    last_conv: Optional[nn.Conv2d] = None
    if not _norm_follows_conv(model):
        return 0
    for name, child in list(model.named_children()):
        if (isinstance(child, _BatchNorm) and last_conv is not None
                and child.running_var is not None
                and child.num_features == last_conv.out_channels):
            weight, bias = fuse_conv_norm(last_conv.weight, child, name,
                                          last_conv.bias)
            last_conv.weight = nn.Parameter(weight.detach())
            last_conv.bias = nn.Parameter(bias.detach())
            setattr(model, name, nn.Identity())
            folded += 1
        elif not isinstance(child, (nn.Conv2d, _BatchNorm)):
            folded += fold_conv_bn(child)
        last_conv = child if isinstance(child, nn.Conv2d) else None
    return folded


def _norm_follows_conv(module: nn.Module) -> bool:
    """False for an mmcv ``ConvModule`` that applies its norm elsewhere
    than right after its conv (``order=('norm', 'act', 'conv')``: DSOD's
    pre-activation layers), which registers the conv before the norm all
    the same."""
    order = getattr(module, 'order', None)
    if not isinstance(module, ConvModule) or not getattr(
            module, 'with_norm', False):
        return True
    return tuple(order).index('norm') == tuple(order).index('conv') + 1


def _flat_tensors(obj: Any) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _flat_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _flat_tensors(item)]
    return []


def max_relative_difference(reference: Any, other: Any) -> float:
    """max |a - b| / max |a| over matching tensors of two outputs."""
    ref, new = _flat_tensors(reference), _flat_tensors(other)
    if len(ref) != len(new) or not ref:
        raise ValueError(f'outputs differ in structure: {len(ref)} vs '
                         f'{len(new)} tensors')
    worst = 0.0
    for a, b in zip(ref, new):
        a, b = a.float(), b.float()
        scale = a.abs().max().item() or 1.0
        worst = max(worst, (a - b).abs().max().item() / scale)
    return worst


@dataclass
class InferenceForm:
    """What :func:`to_inference_form` did.

    Attributes:
        reparameterized (list[str]): Modules whose branches were fused.
        folded_bn (int): BatchNorm layers folded into convs.
        channels_last (bool): Weights converted to NHWC.
        max_rel_diff (float, optional): Largest relative output change on
            the check call; None without one.
    """
    reparameterized: List[str] = field(default_factory=list)
    folded_bn: int = 0
    channels_last: bool = False
    max_rel_diff: Optional[float] = None

    def __str__(self) -> str:
        parts = [f"re-parameterised {', '.join(self.reparameterized)}"
                 if self.reparameterized else 'no branches to fuse',
                 f'{self.folded_bn} BatchNorm folded into convs']
        if self.channels_last:
            parts.append('channels-last')
        if self.max_rel_diff is not None:
            parts.append(
                f'max relative output change {self.max_rel_diff:.1e}')
        return 'inference form: ' + ', '.join(parts)


def to_inference_form(model: nn.Module,
                      fuse_branches: Optional[bool] = None,
                      fold_bn: bool = True,
                      channels_last: bool = False,
                      check: Optional[Callable[[nn.Module], Any]] = None,
                      name: str = '') -> InferenceForm:
    """Turn a trained model into its inference form, in place.

    Args:
        model (nn.Module): A detector or backbone (a wrapper is unwrapped);
            put in ``eval()`` mode.
        fuse_branches (bool, optional): Fuse the modules that have
            ``switch_to_deploy()``: None fuses those there are (none is
            fine), True requires at least one (a RepVGG benchmark labelled
            ``+deploy``), False fuses nothing. Defaults to None.
        fold_bn (bool): Fold BatchNorms into the convs before them.
            Defaults to True.
        channels_last (bool): Convert the weights to NHWC. Defaults to
            False.
        check (callable, optional): ``check(model)`` returns the output to
            compare before and after the transforms (tensors, possibly
            nested in lists/dicts); see :func:`feature_check`.
        name (str): Label for the error message.

    Returns:
        InferenceForm: What was done.

    Raises:
        ReparameterizationError: A module cannot be fused (GroupNorm in a
            RepVGG), ``fuse_branches=True`` found nothing to fuse, or the
            transforms changed the check output by more than
            :data:`TRANSFORM_TOLERANCE`.
    """
    if is_model_wrapper(model):
        model = model.module
    model.eval()
    reference = None
    if check is not None:
        with torch.no_grad():
            reference = check(model)
    form = InferenceForm(channels_last=channels_last)
    if fuse_branches or (fuse_branches is None
                         and deployable_modules(model)):
        form.reparameterized = reparameterize_model(model)
    if fold_bn:
        form.folded_bn = fold_conv_bn(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if check is not None:
        with torch.no_grad():
            form.max_rel_diff = max_relative_difference(
                reference, check(model))
        if form.max_rel_diff > TRANSFORM_TOLERANCE:
            raise ReparameterizationError(
                f'{name or type(model).__name__}: the inference transforms '
                f'changed the output by {form.max_rel_diff:.2e} (relative), '
                f'above {TRANSFORM_TOLERANCE}; a BN may not directly follow '
                f'the conv it was folded into. Turn BN folding off '
                f'(fold_bn=False) for this model.')
    return form


def feature_check(model: nn.Module,
                  shape: Tuple[int, int] = (320, 320),
                  seed: int = 0) -> Callable[[nn.Module], Any]:
    """A check call for :func:`to_inference_form` on one fixed random image:
    a detector's features (``extract_feat``) and the raw outputs of its
    dense head (``bbox_head``, ``rpn_head``), or a backbone's outputs. (The
    RoI heads run on data-dependent proposals and are not compared.)

    Args:
        model (nn.Module): The model (gives the device).
        shape (tuple[int, int]): Image height and width. Defaults to 320x320.
        seed (int): Seed of the image.
    """
    device = next(model.parameters()).device
    image = torch.randn((1, 3, *shape),
                        generator=torch.Generator().manual_seed(seed))
    image = image.to(device)

    def check(m: nn.Module) -> Any:
        if not hasattr(m, 'extract_feat'):
            return m(image)
        feats = m.extract_feat(image)
        heads = [getattr(m, name) for name in ('bbox_head', 'rpn_head')
                 if getattr(m, name, None) is not None]
        return [feats] + [head(feats) for head in heads]

    return check


class InferenceFormHook(Hook):
    """Turn the runner's model into its inference form before testing.

    ``tools/test.py --deploy`` registers it: the runner loads the
    training-form checkpoint as usual, then this hook (after every other
    ``before_test``) fuses the RepVGG branches and folds the BatchNorms,
    checked on one random image (:func:`feature_check`), so the test loop
    evaluates the network that is deployed.
    """
    priority = 'LOWEST'

    def before_test(self, runner) -> None:
        """Convert ``runner.model`` in place and log what was done."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        form = to_inference_form(model, check=feature_check(model))
        runner.logger.info(str(form))
