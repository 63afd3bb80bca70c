"""PyTorch eager vs PyTorch inference form vs ONNX Runtime latency per
detector, timed in turns in one process.

python tools/analysis/deploy_benchmark.py [--models LABEL ...]
    [--threads 1] [--warmup 2] [--rounds 10] [--out docs/results] [--stem deploy_cpu] [--work-dir DIR]

The logic and what is measured are in :mod:`vovdet.analysis.deploy_benchmark`.
"""
import argparse
import tempfile

from vovdet.analysis.deploy_benchmark import (DEFAULT_MODELS,
                                              run_deploy_benchmark,
                                              write_deploy_benchmark)


def parse_args(argv=None):
    labels = [m.label for m in DEFAULT_MODELS]
    parser = argparse.ArgumentParser(
        description='Latency of each detector as PyTorch eager, PyTorch '
        'inference form and ONNX Runtime (post-processing included)')
    parser.add_argument('--models', nargs='+', choices=labels,
                        default=labels, metavar='LABEL',
                        help=f"detectors (default all: {', '.join(labels)})")
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads of both runtimes (default 1)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--out', default='docs/results',
                        help='folder of the .json/.md/.png')
    parser.add_argument('--stem', default='deploy_cpu')
    parser.add_argument('--work-dir', help='folder for the ONNX files '
                        '(default: a temporary one)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    models = [m for m in DEFAULT_MODELS if m.label in args.models]
    with tempfile.TemporaryDirectory() as tmp:
        bench = run_deploy_benchmark(models, args.work_dir or tmp,
                                     args.threads, args.warmup, args.rounds)
    for path in write_deploy_benchmark(bench, args.out, args.stem):
        print(f'wrote {path}')


if __name__ == '__main__':
    main()
