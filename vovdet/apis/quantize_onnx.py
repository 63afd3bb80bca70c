"""``tools/deploy/quantize_onnx.py``: INT8 static quantization of an
exported detector, calibrated on the config's training images (library:
:mod:`vovdet.deploy.quantize`)."""
import argparse
from typing import List, Optional

from .common import add_cfg_options, parse, require_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Quantize an ONNX detector of tools/deploy/'
        'export_onnx.py to INT8 (QDQ; convs and fully connected layers), '
        'calibrating the activation ranges on the config\'s training '
        'images')
    parser.add_argument('config', help='config of the exported detector '
                        '(its preprocessing and training annotations)')
    parser.add_argument('model', help='FP32 ONNX graph to quantize')
    parser.add_argument('out', help='INT8 ONNX graph to write')
    parser.add_argument('--calib-images', type=int, default=64,
                        help='training images to calibrate on (default 64)')
    parser.add_argument(
        '--calib-ann-file', help='annotation file of the calibration '
        "images, relative to the dataset's data_root (default: the "
        "config's train_dataloader's)")
    add_quantization_args(parser)
    add_cfg_options(parser, 'before reading the data')
    return parser


def add_quantization_args(parser: argparse.ArgumentParser) -> None:
    """The calibration and scheme arguments shared with ``tools/analysis/
    int8_benchmark.py``."""
    from vovdet.deploy.quantize import (ACTIVATION_TYPES,
                                        CALIBRATION_METHODS, QUANT_FORMATS)
    formats, activations = QUANT_FORMATS, ACTIVATION_TYPES
    parser.add_argument('--method', default='MinMax',
                        choices=CALIBRATION_METHODS,
                        help='calibration method (default MinMax)')
    parser.add_argument('--per-tensor', action='store_true',
                        help='one weight scale per tensor (default: per '
                        'output channel)')
    parser.add_argument('--format', default=formats[0], choices=formats,
                        help=f'quantized graph format (default {formats[0]}:'
                        f' integer ops, fastest on x86 CPUs; QDQ for '
                        f'accelerators)')
    parser.add_argument('--activation-type', default=activations[0],
                        choices=activations,
                        help=f'activation type (default {activations[0]})')
    parser.add_argument('--reduce-range', action='store_true',
                        help='7-bit weights (x86 CPUs without VNNI)')
    parser.add_argument('--quantize-predictions', action='store_true',
                        help="quantize the heads' prediction layers too")


def quantization_kwargs(args: argparse.Namespace) -> dict:
    """:func:`~vovdet.deploy.quantize.quantize_onnx`'s scheme arguments
    from :func:`add_quantization_args`'s."""
    return dict(per_channel=not args.per_tensor,
                quant_format=args.format,
                activation_type=args.activation_type,
                reduce_range=args.reduce_range,
                quantize_predictions=args.quantize_predictions)


def main(argv: Optional[List[str]] = None):
    """Run ``tools/deploy/quantize_onnx.py``; returns the
    :class:`~vovdet.deploy.quantize.QuantizeResult`."""
    from vovdet.deploy.evaluate import build_data_preprocessor
    from vovdet.deploy.onnx import load_config
    from vovdet.deploy.quantize import calibration_images, quantize_onnx

    args = parse(build_parser(), argv)
    require_files(config=args.config, model=args.model)
    if args.calib_images < 1:
        raise SystemExit('error: --calib-images must be at least 1')
    cfg = load_config(args.config, args.cfg_options)
    try:
        images = calibration_images(cfg, build_data_preprocessor(cfg),
                                    args.calib_images, args.calib_ann_file)
    except ValueError as err:
        raise SystemExit(f'error: {err}') from None
    result = quantize_onnx(args.model, args.out, images, args.method,
                           **quantization_kwargs(args))
    print(f'wrote {result.path}: {result}')
    return result
