"""Latency, FPS, peak memory, GFLOP/s and energy per image of a config.

python tools/analysis/benchmark.py CONFIG [CHECKPOINT] [--shape H W]
    [--batch N] [--repeats R] [--warmup W] [--part backbone|detector]
    [--mode inference|train] [--deploy] [--fuse-conv-bn] [--channels-last]
    [--device DEV] [--threads T] [--json-out FILE] [--cfg-options k=v ...]

What each number means is documented in :mod:`vovdet.analysis.benchmark`
and docs/benchmarks.md.
"""
import argparse
import json

from mmengine.config import DictAction

from vovdet.analysis.benchmark import (MODES, PARTS, RAPL_ROOT,
                                       BenchmarkSettings, ModelSpec,
                                       benchmark_spec, format_result)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark the backbone or the whole detector of an '
        'mmdet config: latency (median, p90), FPS, peak memory, achieved '
        'GFLOP/s and energy per image')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint', nargs='?', help='checkpoint to load (default: random '
        'weights; speed does not depend on them, except that a detector '
        'keeps more detections with trained weights)')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'),
        help='input height and width (default 512 512)')
    parser.add_argument('--batch', type=int, default=1,
                        help='images per call (default 1)')
    parser.add_argument('--repeats', type=int, default=50,
                        help='timed calls (default 50)')
    parser.add_argument('--warmup', type=int, default=10,
                        help='untimed calls first (default 10)')
    parser.add_argument(
        '--part', choices=PARTS, default='backbone',
        help='backbone alone, or the detector end to end (data '
        'preprocessing, forward, post-processing) (default backbone)')
    parser.add_argument(
        '--mode', choices=MODES, default='inference',
        help='inference, or train = one train_step (forward, loss, '
        'backward, optimizer step) per call; detector only')
    parser.add_argument(
        '--deploy', action='store_true',
        help='call switch_to_deploy() (RepVGG re-parameterisation)')
    parser.add_argument(
        '--fuse-conv-bn', action='store_true',
        help='fold BatchNorm layers into the convs before them')
    parser.add_argument('--channels-last', action='store_true',
                        help='NHWC memory format for weights and inputs')
    parser.add_argument('--device', default='auto',
                        help='auto (CUDA if available), cpu, cuda, cuda:1')
    parser.add_argument(
        '--threads', type=int,
        help='torch intra-op threads (default: torch default)')
    parser.add_argument(
        '--rapl-root', default=RAPL_ROOT,
        help=f'powercap sysfs root for CPU energy (default {RAPL_ROOT})')
    parser.add_argument('--json-out', help='also write the result as JSON')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. '
        'model.test_cfg.rcnn.score_thr=0.0')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    settings = BenchmarkSettings(
        shape=tuple(args.shape),
        batch=args.batch,
        repeats=args.repeats,
        warmup=args.warmup,
        part=args.part,
        mode=args.mode,
        deploy=args.deploy,
        fuse_conv_bn=args.fuse_conv_bn,
        channels_last=args.channels_last,
        device=args.device,
        threads=args.threads,
        rapl_root=args.rapl_root)
    spec = ModelSpec(
        label=args.config,
        config=args.config,
        checkpoint=args.checkpoint,
        cfg_options=dict(args.cfg_options) if args.cfg_options else None)
    result = benchmark_spec(spec, settings)
    print(format_result(result))
    if args.json_out:
        with open(args.json_out, 'w') as f:
            json.dump(result.to_dict(), f, indent=2)


if __name__ == '__main__':
    main()
