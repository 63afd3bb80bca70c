"""INT8 post-training static quantization of an exported detector with
``onnxruntime.quantization``.

:func:`quantize_onnx` takes the float graph of
:func:`~vovdet.deploy.export_onnx` and writes an INT8 graph: weights int8
per output channel, activations uint8 with ranges calibrated on
preprocessed images of the config's *training* set
(:func:`calibration_images`), so the held-out test set scores the result.

The defaults are what ran fastest on the x86 CPU it was measured on
(docs/deploy.md, INT8), as ONNX Runtime's quantization guide advises for
x86-64 with AVX2/AVX-512: **uint8 activations with int8 weights (U8S8)** in
the **QOperator** format (``QLinearConv``/``QGemm`` nodes). With int8
activations (S8S8) the same convs ran 7x slower than float in the QOperator
format, and in the QDQ format most convs were not fused into integer
kernels at all (dequantize, float conv, quantize). The QDQ format
(``quant_format='QDQ'``) is what TensorRT and other accelerators read.

Only the network's convs and fully connected layers are quantized
(:data:`QUANTIZED_OPS`), and of those not the heads' prediction layers
(:func:`prediction_layers`). Box decoding, softmax, top-k, NMS,
``RoiAlign`` and mask pasting stay in float, as does every op between the
convs that has no integer kernel (GroupNorm, the eSE gate's sigmoid): ONNX
Runtime dequantizes before them. Quantizing the decoding arithmetic would
put box coordinates on a 256-level grid.

Calibration methods are ONNX Runtime's (``MinMax``, ``Entropy``,
``Percentile``, ``Distribution``); ``MinMax`` is the default.
"""
import os
import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
import torch.nn as nn

from .evaluate import preprocessed_images
from .onnx import require

QUANTIZED_OPS = ('Conv', 'Gemm')
CALIBRATION_METHODS = ('MinMax', 'Entropy', 'Percentile', 'Distribution')
QUANT_FORMATS = ('QOperator', 'QDQ')
ACTIVATION_TYPES = ('uint8', 'int8')
# the integer forms of QUANTIZED_OPS in the QOperator format
INTEGER_OPS = {'QLinearConv': 'Conv', 'QGemm': 'Gemm'}


@dataclass
class QuantizeResult:
    """What :func:`quantize_onnx` wrote.

    Attributes:
        path (str): The INT8 (QDQ) graph.
        method (str): The calibration method.
        scheme (str): Format and types, e.g. ``'QOperator U8S8'``
            (uint8 activations, int8 weights).
        calibration_images (int): Images the ranges were calibrated on.
        per_channel (bool): Weights quantized per output channel.
        quantized (dict[str, int]): Quantized nodes by op type.
        float_nodes (dict[str, int]): Nodes of :data:`QUANTIZED_OPS` types
            left in float.
        float_predictions (int): Of those, the heads' prediction layers
            kept in float on purpose (:func:`prediction_layers`).
        size_mb (tuple[float, float]): File size before and after.
    """
    path: str
    method: str
    scheme: str
    calibration_images: int
    per_channel: bool
    quantized: dict
    float_nodes: dict
    size_mb: tuple
    float_predictions: int = 0

    def __str__(self) -> str:
        done = ', '.join(f'{n} {op}' for op, n in self.quantized.items())
        left = ', '.join(f'{n} {op}' for op, n in self.float_nodes.items())
        if left:
            left = f'; left in float: {left} ({self.float_predictions} ' \
                'of them prediction layers)'
        scales = 'channel' if self.per_channel else 'tensor'
        return (f'INT8 {self.scheme} ({self.method} calibration on '
                f'{self.calibration_images} images, weights per-{scales}): '
                f'quantized {done or "nothing"}{left}; '
                f'{self.size_mb[0]:.1f} MB -> {self.size_mb[1]:.1f} MB')


def calibration_images(cfg: Any,
                       data_preprocessor: nn.Module,
                       num: int,
                       ann_file: Optional[str] = None) -> List[np.ndarray]:
    """``num`` preprocessed ``(1, 3, H, W)`` images (the graph's input) of
    the config's training annotation file, through the *test* pipeline.

    Raises:
        ValueError: The annotation file has fewer than ``num`` images.
    """
    if ann_file is None:
        ann_file = cfg.train_dataloader.dataset.ann_file
    images = [image.numpy() for image, _ in preprocessed_images(
        cfg, data_preprocessor, ann_file=ann_file, limit=num)]
    if len(images) < num:
        raise ValueError(f'{ann_file} has {len(images)} images, fewer than '
                         f'the {num} asked for calibration')
    return images


def _reader(images: Sequence[np.ndarray]) -> Any:
    quantization = require('onnxruntime.quantization')

    class Reader(quantization.CalibrationDataReader):
        """Feeds the calibration images as the graph's ``image`` input."""

        def __init__(self) -> None:
            self.items = iter(images)

        def get_next(self) -> Optional[dict]:
            image = next(self.items, None)
            return None if image is None else {'image': image}

    return Reader()


def _quantized_counts(path: str) -> tuple:
    """Per :data:`QUANTIZED_OPS` type, how many nodes are quantized (an
    integer op of :data:`INTEGER_OPS`, or in QDQ a node whose weight is
    dequantized) and how many stay float."""
    onnx = require('onnx')
    graph = onnx.load(path).graph
    dequantized = {o for n in graph.node if n.op_type == 'DequantizeLinear'
                   for o in n.output}
    quantized: dict = {}
    left: dict = {}
    for node in graph.node:
        if node.op_type in INTEGER_OPS:
            op = INTEGER_OPS[node.op_type]
            quantized[op] = quantized.get(op, 0) + 1
        elif node.op_type in QUANTIZED_OPS:
            counts = quantized if node.input[1] in dequantized else left
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return quantized, left


# Inputs that carry indices, boxes or sizes rather than features: a path
# through them is post-processing, not the network.
NON_FEATURE_INPUTS = {
    'RoiAlign': (1, 2), 'Gather': (1, ), 'GatherElements': (1, ),
    'GatherND': (1, ), 'Reshape': (1, ), 'Expand': (1, ), 'Slice': (1, 2, 3,
                                                                     4),
    'Resize': (1, 2, 3), 'TopK': (1, ), 'Tile': (1, ), 'ScatterND': (1, ),
}
INDEX_OPS = ('Shape', 'Size', 'NonMaxSuppression', 'NonZero', 'ArgMax',
             'ArgMin', 'ConstantOfShape', 'Range')


def prediction_layers(graph: Any,
                      op_types: Sequence[str] = QUANTIZED_OPS) -> List[str]:
    """Names of the ``op_types`` nodes whose output reaches no other such
    node as a feature: the heads' last convs / fully connected layers
    (class scores, box deltas, mask logits), whose outputs only the
    post-processing reads.

    The search follows every consumer of a node's outputs except inputs
    that carry indices, boxes or sizes (:data:`NON_FEATURE_INPUTS`, e.g.
    ``RoiAlign``'s boxes) and ops that make indices (:data:`INDEX_OPS`), so
    an RPN's box deltas, which reach the RoI head's convs only as
    ``RoiAlign`` boxes, are a prediction, and the convs feeding ``RoiAlign``
    its features are not.
    """
    consumers: dict = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    found = []
    for node in graph.node:
        if node.op_type not in op_types:
            continue
        seen, stack, feeds_layer = set(), list(node.output), False
        while stack and not feeds_layer:
            tensor = stack.pop()
            for user, index in consumers.get(tensor, ()):
                if (user.op_type in INDEX_OPS
                        or index in NON_FEATURE_INPUTS.get(user.op_type, ())):
                    continue
                if user.op_type in op_types:
                    feeds_layer = True
                    break
                if id(user) not in seen:
                    seen.add(id(user))
                    stack.extend(user.output)
        if not feeds_layer:
            found.append(node.name)
    return found


def quantize_onnx(fp32_path: str,
                  out: str,
                  images: Sequence[np.ndarray],
                  method: str = 'MinMax',
                  per_channel: bool = True,
                  op_types: Sequence[str] = QUANTIZED_OPS,
                  quantize_predictions: bool = False,
                  quant_format: str = 'QOperator',
                  activation_type: str = 'uint8',
                  reduce_range: bool = False) -> QuantizeResult:
    """Quantize an exported detector to INT8 (see the module docstring).

    The graph is first pre-processed as ONNX Runtime recommends
    (``quant_pre_process``: ONNX shape inference and graph optimisation;
    its symbolic shape inference cannot follow NMS's data-dependent sizes
    and is skipped), then
    its activation ranges are calibrated on ``images`` and the ``op_types``
    nodes but the prediction layers quantized.

    Args:
        fp32_path (str): The float graph (:func:`~vovdet.deploy.
            export_onnx`).
        out (str): The INT8 graph to write.
        images (Sequence[np.ndarray]): Preprocessed ``(1, 3, H, W)``
            calibration images (:func:`calibration_images`).
        method (str): One of :data:`CALIBRATION_METHODS`.
        per_channel (bool): Weights per output channel (per tensor
            otherwise).
        op_types (Sequence[str]): Op types to quantize.
        quantize_predictions (bool): Quantize the heads' prediction layers
            too (:func:`prediction_layers`); by default they stay in float,
            so class scores and box deltas are not rounded to 256 levels.
        quant_format (str): ``'QOperator'`` (integer ops, the default: the
            fastest on the x86 CPU measured) or ``'QDQ'``
            (``QuantizeLinear``/``DequantizeLinear`` pairs around float
            ops, for accelerators).
        activation_type (str): ``'uint8'`` (default) or ``'int8'``.
        reduce_range (bool): 7-bit weights, which ONNX Runtime advises for
            x86 CPUs without VNNI (int8 dot products saturate there).

    Raises:
        ValueError: An unknown method, format or activation type, or no
            calibration images.
    """
    quantization = require('onnxruntime.quantization')
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if method not in CALIBRATION_METHODS:
        raise ValueError(f'unknown calibration method {method!r}; choose '
                         f'one of {", ".join(CALIBRATION_METHODS)}')
    for what, value, choices in (
            ('quant_format', quant_format, QUANT_FORMATS),
            ('activation_type', activation_type, ACTIVATION_TYPES)):
        if value not in choices:
            raise ValueError(f'unknown {what} {value!r}; choose one of '
                             f'{", ".join(choices)}')
    if not len(images):
        raise ValueError('INT8 calibration needs at least one image')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        # symbolic shape inference gives up on the post-processing's
        # data-dependent sizes (NMS output counts); ONNX's own shape
        # inference and the graph optimisation still run
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        onnx = require('onnx')
        kept = [] if quantize_predictions else prediction_layers(
            onnx.load(prepared).graph, op_types)
        quantization.quantize_static(
            prepared,
            out,
            _reader(images),
            quant_format=getattr(quantization.QuantFormat, quant_format),
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=kept,
            per_channel=per_channel,
            activation_type=(quantization.QuantType.QUInt8
                             if activation_type == 'uint8' else
                             quantization.QuantType.QInt8),
            weight_type=quantization.QuantType.QInt8,
            reduce_range=reduce_range,
            calibrate_method=getattr(quantization.CalibrationMethod, method),
            calibration_providers=['CPUExecutionProvider'])
    quantized, left = _quantized_counts(out)
    return QuantizeResult(
        path=out,
        method=method,
        scheme=(f'{quant_format} {activation_type[0].upper()}8S8'.replace(
            'I8S8', 'S8S8') + (' reduced range' if reduce_range else '')),
        calibration_images=len(images),
        per_channel=per_channel,
        quantized=quantized,
        float_nodes=left,
        float_predictions=len(kept),
        size_mb=(osp.getsize(fp32_path) / 2**20, osp.getsize(out) / 2**20))
