"""``tools/deploy/test_onnx.py``: evaluate an exported detector (FP32 or
INT8 ONNX) on the config's test set under ONNX Runtime, as
``tools/test.py`` evaluates the PyTorch one (library:
:mod:`vovdet.deploy.evaluate`)."""
import argparse
from typing import Dict, List, Optional

from .common import add_cfg_options, parse, require_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Evaluate an ONNX detector of tools/deploy/'
        'export_onnx.py (or quantize_onnx.py) on the config\'s test set '
        'with its test_evaluator, under ONNX Runtime (CPU)')
    parser.add_argument('config', help='config of the exported detector')
    parser.add_argument('model', help='ONNX graph to evaluate')
    parser.add_argument('--threads', type=int,
                        help="intra-op threads (default: ONNX Runtime's)")
    add_cfg_options(parser, 'before building the test data')
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Run ``tools/deploy/test_onnx.py``; returns the metrics."""
    from vovdet.deploy import OnnxDetector
    from vovdet.deploy.onnx import load_config
    from vovdet.deploy.evaluate import (build_data_preprocessor, evaluate,
                                        onnx_predict)
    args = parse(build_parser(), argv)
    require_files(config=args.config, model=args.model)
    cfg = load_config(args.config, args.cfg_options)
    runtime = OnnxDetector(args.model, threads=args.threads)
    try:
        metrics = evaluate(onnx_predict(runtime), cfg,
                           build_data_preprocessor(cfg))
    except ValueError as err:
        raise SystemExit(f'error: {err}') from None
    for name, value in metrics.items():
        print(f'{name}: {value:.4f}')
    return metrics
