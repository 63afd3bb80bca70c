"""``tools/deploy/export_onnx.py``: export a trained detector, post-processing
included, to ONNX (library: :mod:`vovdet.deploy.onnx`)."""
import argparse
from typing import List, Optional

from .common import add_cfg_options, parse, require_files


def build_parser() -> argparse.ArgumentParser:
    from vovdet.deploy.onnx import DEFAULT_OPSET
    parser = argparse.ArgumentParser(
        description='Export a trained detector (RefineDet, DSOD, Mask '
        'R-CNN) in its inference form to ONNX: the graph takes a '
        'preprocessed 1x3xHxW image and returns the final boxes, scores, '
        'labels (and masks)')
    parser.add_argument('config', help='config the checkpoint was trained '
                        'with')
    parser.add_argument('checkpoint', help='trained detector checkpoint')
    parser.add_argument('out', help='ONNX file to write')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input height and width (default: the config\'s test Resize '
        'scale, padded to the preprocessor\'s size divisor)')
    parser.add_argument(
        '--dynamic', action='store_true',
        help='make the input height and width dynamic')
    parser.add_argument(
        '--opset', type=int, default=DEFAULT_OPSET,
        help=f'ONNX opset (default {DEFAULT_OPSET}; Mask R-CNN needs 16+)')
    parser.add_argument(
        '--no-fold-bn', action='store_true',
        help='keep BatchNorms as separate layers')
    add_cfg_options(parser)
    return parser


def main(argv: Optional[List[str]] = None):
    """Run ``tools/deploy/export_onnx.py``; returns the
    :class:`~vovdet.deploy.onnx.ExportResult`."""
    from vovdet.deploy.onnx import build_detector, default_shape, export_onnx
    args = parse(build_parser(), argv)
    require_files(config=args.config, checkpoint=args.checkpoint)
    model, cfg = build_detector(args.config, args.checkpoint,
                                args.cfg_options)
    shape = tuple(args.shape) if args.shape else default_shape(cfg)
    result = export_onnx(model, args.out, shape, args.dynamic, args.opset,
                         fold_bn=not args.no_fold_bn)
    size = 'dynamic height and width, traced at' if args.dynamic else \
        'fixed at'
    print(f'exported {result.family} to {result.path} (opset '
          f'{result.opset}): input image 1x3xHxW, {size} {shape[0]}x'
          f"{shape[1]}; outputs {', '.join(result.output_names)}")
    print(result.inference_form)
    if result.parity_ok:
        print(f'ONNX Runtime (CPU) matches PyTorch on a random {shape[0]}x'
              f'{shape[1]} image: {result.parity}')
    else:
        print(f'WARNING: ONNX Runtime (CPU) differs from PyTorch beyond the '
              f'parity tolerances on a random {shape[0]}x{shape[1]} image: '
              f'{result.parity} (float32 rounding in a sensitive network, '
              f'or tied scores: see docs/deploy.md)')
    for provider, outcome in result.providers.items():
        if outcome == 'ok':
            print(f'{provider}: ran')
        else:
            print(f'could not run under {provider}: {outcome}')
    return result
