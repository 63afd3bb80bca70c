"""Parameters, FLOPs, memory access cost (MAC) and activation memory.

Counting rules (the conventions of the VoVNet, RepVGG and EfficientNet
papers; see ``paper_specs.md`` §1.4, §2b and §7):

* **FLOPs are multiply-adds** of the layers that hold weights:

  - convolution (plain, grouped, depthwise; also mmcv's deformable convs,
    recognised by their ``in_channels``/``out_channels``/``kernel_size``/
    ``groups``/``weight`` attributes):
    ``k_h*k_w * c_in/groups * c_out * h_out*w_out`` per image;
  - transposed convolution: ``k_h*k_w * c_in * c_out/groups * h_in*w_in``;
  - ``nn.Linear``: ``in_features * out_features`` per row.

  Biases, normalisation, activations, pooling, upsampling and the
  element-wise ops between modules (concat, residual add, the eSE multiply)
  are not counted, as in the papers' tables. Parametrised modules without a
  rule above (e.g. mmdet's ``Scale``) are listed in
  :attr:`ComplexityResult.uncounted` so nothing is dropped silently.
* **MAC** (memory access cost, in elements) of a conv or linear layer is
  input elements + output elements + weight elements,
  ``h_in*w_in*c_in + h_out*w_out*c_out + k^2*c_in*c_out/groups``. Taking the
  input map at its own size and the output map at its own size keeps the
  term well defined for strided convs; for a stride-1 "same" conv
  ``h_in = h_out`` and it is the VoVNet paper's Eq. 1,
  ``h*w*(c_in + c_out) + k^2*c_in*c_out``. A linear layer is a 1x1 conv on
  a 1x1 map: ``in + out + in*out``. Biases are not counted.
* **Activation memory**: elements of every tensor a leaf module returns,
  times its element size, except outputs that alias one of the module's
  inputs (in-place ReLU, ``Identity``, views), which allocate nothing.
  Tensors made by functional code between modules (``torch.cat`` in OSA
  modules, residual adds) are not seen by module hooks and not counted.

All counts are for one forward pass of the given inputs (the batch included;
the weight term of MAC counts once per call). A module called several times
(a dense head's convs shared across pyramid levels) is counted at every call.

mmengine's ``get_model_complexity_info`` also counts a fused multiply-add as
one FLOP and handles groups (it multiplies the weight shape, which holds
``c_in/groups``), but it traces through ``torch.jit``, adds norm, upsampling
and adaptive-pooling ops to the total (the papers' numbers leave them out)
and has no MAC; hence these hooks. On convs and linears the two agree
(tested).
"""
import copy
import math
from dataclasses import asdict, dataclass, field
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple, Union)

import torch
import torch.nn as nn
from mmdet.models.detectors import BaseDetector, TwoStageDetector
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

Shape = Tuple[int, ...]
Inputs = Union[Sequence[int], torch.Tensor, Sequence[torch.Tensor]]

# Normalisation layers cost element-wise ops only: no FLOPs by convention,
# and not reported as "uncounted" although they have parameters.
_NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm,
               nn.LocalResponseNorm)
_CONV_ATTRS = ('in_channels', 'out_channels', 'kernel_size', 'groups')

PARTS = ('backbone', 'neck', 'detector')


@dataclass
class LayerComplexity:
    """Counts of one call of one module.

    Attributes:
        name (str): Module name in the model (``#k`` marks the k-th call of
            a module called more than once).
        type (str): Class name of the module.
        in_shapes (list[tuple]): Shapes of the tensor arguments.
        out_shapes (list[tuple]): Shapes of the returned tensors.
        params (int): Parameters owned by the module.
        flops (int): Multiply-adds.
        mac (int): Memory access cost in elements (0 for layers without a
            FLOP rule).
        activations (int): Output elements newly allocated by the module
            (leaf modules only).
        activation_bytes (int): The same in bytes.
    """
    name: str
    type: str
    in_shapes: List[Shape]
    out_shapes: List[Shape]
    params: int
    flops: int
    mac: int
    activations: int
    activation_bytes: int


@dataclass
class ComplexityResult:
    """Totals and per-layer counts of one forward pass.

    Attributes:
        params (int): All parameters of the model (shared ones once), whether
            or not their modules ran.
        flops (int): Multiply-adds of the conv and linear layers that ran.
        mac (int): Memory access cost of those layers, in elements.
        activations (int): Newly allocated leaf-module output elements.
        activation_bytes (int): The same in bytes.
        input_shapes (list[tuple]): Shapes of the input tensors.
        layers (list[LayerComplexity]): One row per call of a leaf module or
            of a module owning parameters, in call order.
        not_run (list[str]): Modules holding parameters that the counted
            forward never called (e.g. ``roi_head`` of a two-stage detector),
            each reported at its outermost such module.
        uncounted (list[str]): ``name (Type)`` of parametrised modules that
            ran but have no FLOP rule.
    """
    params: int
    flops: int
    mac: int
    activations: int
    activation_bytes: int
    input_shapes: List[Shape]
    layers: List[LayerComplexity] = field(default_factory=list)
    not_run: List[str] = field(default_factory=list)
    uncounted: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """Return the result as plain Python containers."""
        return asdict(self)


def conv_mac(h: int, w: int, c_in: int, c_out: int, k: int) -> int:
    """MAC of a stride-1 k x k conv on an h x w map (VoVNet paper, Eq. 1).

    Args:
        h (int): Feature map height (same at input and output).
        w (int): Feature map width.
        c_in (int): Input channels.
        c_out (int): Output channels.
        k (int): Kernel size.

    Returns:
        int: ``h*w*(c_in + c_out) + k^2*c_in*c_out`` elements.
    """
    return h * w * (c_in + c_out) + k * k * c_in * c_out


def mac_lower_bound(h: int, w: int, c_in: int, c_out: int, k: int) -> float:
    """Smallest MAC of any stride-1 conv with the FLOPs of the given one.

    With ``B = k^2*h*w*c_in*c_out`` fixed, the AM-GM inequality gives
    ``MAC >= 2*h*w*sqrt(B/(k^2*h*w)) + B/(h*w)``, with equality iff
    ``c_in = c_out`` (paper_specs §7; ShuffleNetV2's guideline G1
    generalised to k x k kernels).

    Args:
        h (int): Feature map height.
        w (int): Feature map width.
        c_in (int): Input channels.
        c_out (int): Output channels.
        k (int): Kernel size.

    Returns:
        float: The lower bound in elements.
    """
    flops = k * k * h * w * c_in * c_out
    return 2 * h * w * math.sqrt(flops / (k * k * h * w)) + flops / (h * w)


def mac_table(h: int,
              w: int,
              k: int,
              channel_product: int,
              in_channels: Sequence[int]) -> List[Dict[str, float]]:
    """Tabulate MAC of convs that share FLOPs but split channels differently.

    Args:
        h (int): Feature map height.
        w (int): Feature map width.
        k (int): Kernel size.
        channel_product (int): ``c_in * c_out``, fixed so that every row has
            the same FLOPs.
        in_channels (Sequence[int]): The ``c_in`` of each row; each must
            divide ``channel_product``.

    Returns:
        list[dict]: Rows with ``c_in``, ``c_out``, ``flops``, ``mac``,
        ``lower_bound`` and ``ratio`` (= mac / lower_bound).
    """
    rows = []
    for c_in in in_channels:
        if channel_product % c_in:
            raise ValueError(f'c_in={c_in} does not divide channel_product='
                             f'{channel_product}; pick divisors of it')
        c_out = channel_product // c_in
        mac = conv_mac(h, w, c_in, c_out, k)
        bound = mac_lower_bound(h, w, c_in, c_out, k)
        rows.append(
            dict(
                c_in=c_in,
                c_out=c_out,
                flops=k * k * h * w * c_in * c_out,
                mac=mac,
                lower_bound=bound,
                ratio=mac / bound))
    return rows


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors in a (nested) tuple/list/dict, depth first."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _is_conv(module: nn.Module) -> bool:
    weight = getattr(module, 'weight', None)
    return (all(hasattr(module, attr) for attr in _CONV_ATTRS)
            and isinstance(weight, torch.Tensor) and weight.dim() >= 3)


def _flops_and_mac(module: nn.Module, x: Optional[torch.Tensor],
                   y: Optional[torch.Tensor]) -> Optional[Tuple[int, int]]:
    """Multiply-adds and MAC of one call, or None if there is no rule."""
    if x is None or y is None:
        return None
    if _is_conv(module):
        weight = module.weight.numel()
        if getattr(module, 'transposed', False):
            # weight is (c_in, c_out/groups, k...): every input element is
            # multiplied by c_out/groups * k^2 weights.
            flops = x.numel() * weight // module.in_channels
        else:
            # weight is (c_out, c_in/groups, k...): every output element
            # needs c_in/groups * k^2 multiply-adds.
            flops = y.numel() * weight // module.out_channels
        return flops, x.numel() + y.numel() + weight
    if isinstance(module, nn.Linear):
        weight = module.weight.numel()
        flops = x.numel() // module.in_features * weight
        return flops, x.numel() + y.numel() + weight
    return None


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _make_inputs(model: nn.Module, inputs: Inputs) -> Any:
    """Turn a ``(C, H, W)`` shape into a batch-1 tensor; pass tensors on."""
    if isinstance(inputs, torch.Tensor):
        return inputs
    if (isinstance(inputs, (list, tuple)) and inputs
            and all(isinstance(t, torch.Tensor) for t in inputs)):
        return tuple(inputs)
    if (isinstance(inputs, (list, tuple)) and inputs
            and all(isinstance(s, int) for s in inputs)):
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
        dtype = param.dtype if param is not None else torch.float32
        generator = torch.Generator().manual_seed(0)
        return torch.rand((1, *inputs), generator=generator).to(
            device=device, dtype=dtype)
    raise TypeError(f'inputs must be a shape such as (3, 224, 224), a tensor '
                    f'or a sequence of tensors, got {inputs!r}')


def detector_forward(model: BaseDetector, inputs: torch.Tensor) -> Any:
    """Run the part of a detector whose cost does not depend on the image.

    Two-stage detectors: ``extract_feat`` (backbone + neck) and the RPN
    head's forward. The RoI head is left out: its cost scales with the
    number of proposals kept after NMS, and mmdet's tensor mode needs data
    samples to produce them. Other detectors: mmdet's tensor mode
    (``model._forward``), which for single-stage detectors is
    ``extract_feat`` + ``bbox_head.forward``.

    Args:
        model (BaseDetector): An mmdet detector.
        inputs (Tensor): Images (N, C, H, W), already normalised and padded
            (the data preprocessor is not run).

    Returns:
        The raw outputs of the run part.
    """
    if isinstance(model, TwoStageDetector):
        feats = model.extract_feat(inputs)
        if model.with_rpn:
            return model.rpn_head(feats)
        return feats
    try:
        return model(inputs, None, mode='tensor')
    except Exception as err:
        raise RuntimeError(
            f'{type(model).__name__} cannot run in tensor mode without data '
            f'samples ({err}); pass forward_fn to get_complexity to choose '
            f'what to count, e.g. lambda m, x: m.extract_feat(x)') from err


def _default_forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(model, BaseDetector):
        return detector_forward(model, inputs)
    return model(inputs)


def get_complexity(
        model: nn.Module,
        inputs: Inputs = (3, 224, 224),
        forward_fn: Optional[Callable[[nn.Module, Any], Any]] = None
) -> ComplexityResult:
    """Count parameters, FLOPs, MAC and activation memory of a model.

    The model runs once in eval mode without gradients (its train/eval mode
    is restored afterwards); forward hooks record every call of a leaf module
    and of every module owning parameters. The counting rules are in the
    module docstring.

    Args:
        model (nn.Module): A backbone, a neck, a detector or any module.
        inputs: ``(C, H, W)`` for a batch-1 random image; a tensor; or a
            sequence of tensors passed as one argument (a neck's feature
            maps). Defaults to ``(3, 224, 224)``.
        forward_fn (callable, optional): ``forward_fn(model, inputs)`` runs
            what is to be counted. Defaults to :func:`detector_forward` for
            mmdet detectors and ``model(inputs)`` otherwise.

    Returns:
        ComplexityResult: Totals and the per-layer table.

    Example:
        >>> import torch.nn as nn
        >>> res = get_complexity(nn.Conv2d(16, 32, 3, padding=1), (16, 8, 8))
        >>> res.flops, res.mac  # 9*16*32*64, 64*16 + 64*32 + 9*16*32
        (294912, 7680)
    """
    forward_fn = forward_fn or _default_forward
    inputs = _make_inputs(model, inputs)
    rows: List[LayerComplexity] = []
    uncounted: List[str] = []
    called = set()
    calls_per_name: Dict[str, int] = {}
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        name = names[module]
        called.add(name)
        is_leaf = next(module.children(), None) is None
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if not is_leaf and params == 0:
            return
        ins = list(_tensors(args))
        outs = list(_tensors(output))
        counts = _flops_and_mac(module, ins[0] if ins else None,
                                outs[0] if outs else None)
        flops, mac = counts if counts is not None else (0, 0)
        display = name or type(model).__name__
        label = f'{display} ({type(module).__name__})'
        if (counts is None and params and label not in uncounted
                and not isinstance(module, _NORM_TYPES)):
            uncounted.append(label)
        calls = calls_per_name[name] = calls_per_name.get(name, 0) + 1
        if calls > 1:
            display = f'{display}#{calls}'
        new_outs = []
        if is_leaf:
            in_ptrs = {_storage_ptr(t) for t in ins}
            new_outs = [t for t in outs if _storage_ptr(t) not in in_ptrs]
        rows.append(
            LayerComplexity(
                name=display,
                type=type(module).__name__,
                in_shapes=[tuple(t.shape) for t in ins],
                out_shapes=[tuple(t.shape) for t in outs],
                params=params,
                flops=flops,
                mac=mac,
                activations=sum(t.numel() for t in new_outs),
                activation_bytes=sum(t.numel() * t.element_size()
                                     for t in new_outs)))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward_fn(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    return ComplexityResult(
        params=sum(p.numel() for p in model.parameters()),
        flops=sum(row.flops for row in rows),
        mac=sum(row.mac for row in rows),
        activations=sum(row.activations for row in rows),
        activation_bytes=sum(row.activation_bytes for row in rows),
        input_shapes=[tuple(t.shape) for t in _tensors(inputs)],
        layers=rows,
        not_run=_not_run(model, called),
        uncounted=uncounted)


def _not_run(model: nn.Module, called: set) -> List[str]:
    """Outermost modules with parameters none of whose submodules ran."""
    # A module ran if it or a submodule was called: containers such as
    # ModuleList are iterated, never called; the root counts as run even
    # if only one of its methods (e.g. ``extract_feat``) was.
    active = {''}
    for name in called:
        parts = name.split('.')
        active.update('.'.join(parts[:i]) for i in range(1, len(parts) + 1))
    missing = []
    for name, module in model.named_modules():
        if name in active or next(module.parameters(), None) is None:
            continue
        if name.rpartition('.')[0] in active:
            missing.append(name)
    return missing


def build_model_from_config(config: Union[str, Config],
                            cfg_options: Optional[dict] = None) -> nn.Module:
    """Build ``cfg.model`` through mmdet's registry.

    Args:
        config (str or Config): Config path or object.
        cfg_options (dict, optional): Overrides merged into the config, e.g.
            ``{'model.backbone.stem_stride_mode': 'paper'}``.

    Returns:
        nn.Module: The model, with mmdet's default (not ``init_weights``)
        initialisation; counts do not depend on weight values.
    """
    register_all_modules(init_default_scope=True)
    if isinstance(config, str):
        cfg = Config.fromfile(config)
    else:
        cfg = copy.deepcopy(config)  # the overrides stay local
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return MODELS.build(cfg.model)


def get_config_complexity(config: Union[str, Config],
                          shape: Tuple[int, int] = (224, 224),
                          part: str = 'backbone',
                          cfg_options: Optional[dict] = None,
                          in_channels: int = 3) -> ComplexityResult:
    """Complexity of the backbone, the neck or the whole detector of a config.

    Args:
        config (str or Config): An mmdet config (its ``model`` is built).
        shape (tuple[int, int]): Input height and width. The data
            preprocessor is not run, so no padding is applied.
        part (str): ``'backbone'``; ``'neck'`` (fed the backbone's outputs,
            which are not counted); or ``'detector'`` (see
            :func:`detector_forward` for what is included).
        cfg_options (dict, optional): Config overrides.
        in_channels (int): Image channels. Defaults to 3.

    Returns:
        ComplexityResult: The counts of the chosen part.
    """
    if part not in PARTS:
        raise ValueError(f"unknown part '{part}'; choose one of "
                         f"{', '.join(PARTS)}")
    model = build_model_from_config(config, cfg_options)
    image_shape = (in_channels, *shape)
    if part == 'detector':
        return get_complexity(model, image_shape)
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        raise ValueError(f'{type(model).__name__} has no backbone; use '
                         f"part='detector'")
    if part == 'backbone':
        return get_complexity(backbone, image_shape)
    neck = getattr(model, 'neck', None)
    if neck is None:
        raise ValueError(f'{type(model).__name__} has no neck; use '
                         f"part='backbone' or part='detector'")
    image = _make_inputs(backbone, image_shape)
    backbone.eval()
    with torch.no_grad():
        feats = backbone(image)
    return get_complexity(neck, tuple(feats))


def format_summary(result: ComplexityResult) -> str:
    """Human-readable totals (params in M, GMACs, MAC in M elements)."""
    shapes = ', '.join(str(s) for s in result.input_shapes)
    lines = [
        f'input:                {shapes}',
        f'params:               {result.params / 1e6:.3f} M '
        f'({result.params:,})',
        f'FLOPs (multiply-add): {result.flops / 1e9:.3f} GMACs '
        f'({result.flops:,})',
        f'MAC (memory access):  {result.mac / 1e6:.3f} M elements '
        f'({result.mac:,})',
        f'activation memory:    {result.activation_bytes / 2**20:.2f} MiB '
        f'({result.activations:,} elements)',
    ]
    if result.not_run:
        lines.append(f'not run (not counted): {", ".join(result.not_run)}')
    if result.uncounted:
        lines.append('ran without a FLOP rule: ' + ', '.join(result.uncounted))
    return '\n'.join(lines)


def format_layer_table(result: ComplexityResult) -> str:
    """Per-layer table: name, type, in shape, out shape, params, FLOPs, MAC."""

    def shapes(items: List[Shape]) -> str:
        return ' '.join('x'.join(str(d) for d in s) for s in items) or '-'

    header = ('name', 'type', 'in shape', 'out shape', 'params', 'FLOPs',
              'MAC')
    body = [(row.name, row.type, shapes(row.in_shapes),
             shapes(row.out_shapes), f'{row.params:,}', f'{row.flops:,}',
             f'{row.mac:,}') for row in result.layers]
    widths = [
        max(len(str(cells[i])) for cells in [header] + body)
        for i in range(len(header))
    ]
    left = 4  # text columns are left-aligned, numbers right-aligned

    def fmt(cells: Sequence[str]) -> str:
        return '  '.join(
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(cells))

    rule = '  '.join('-' * width for width in widths)
    return '\n'.join([fmt(header), rule] + [fmt(cells) for cells in body])
