"""FPN vs OSA-FPN vs OSA-PAFPN: params, GFLOPs, MAC and CPU latency.

python tools/analysis/neck_benchmark.py [--shape H W] [--arch V-39]
    [--out-channels 256] [--repeats 10] [--warmup 2] [--threads 1]
    [--no-latency] [--osa-options k=v ...]
    [--sweep-module-channels 128 192 ...] [--sweep-layers 1 2 ...]

The logic and what is measured are in :mod:`vovdet.analysis.neck_benchmark`.
"""
import argparse

import torch
from mmdet.utils import register_all_modules
from mmengine.config import DictAction

import vovdet  # noqa: F401
from vovdet.analysis.neck_benchmark import (GN32, benchmark_necks,
                                            format_neck_table, neck_configs,
                                            sweep_osa_settings,
                                            vovnet_feature_shapes)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Compare FPN, OSA-FPN and OSA-PAFPN on VoVNet feature '
        'shapes: params, multiply-adds, memory access cost and CPU latency')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[800, 1333],
        metavar=('H', 'W'), help='image size before padding to 32 '
        '(default 800 1333)')
    parser.add_argument('--arch', default='V-39',
                        help='VoVNet arch giving the feature shapes')
    parser.add_argument('--out-channels', type=int, default=256)
    parser.add_argument('--num-outs', type=int, default=5)
    parser.add_argument('--norm', choices=['gn', 'bn'], default='gn',
                        help='norm of every neck (default gn, 32 groups)')
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed rounds (default 10)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed rounds first (default 2)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1)')
    parser.add_argument('--no-latency', action='store_true',
                        help='counts only')
    parser.add_argument(
        '--osa-options', nargs='+', action=DictAction, default={},
        help='arguments of both OSA necks, e.g. module_channels=256 '
        'layers_per_module=2')
    parser.add_argument(
        '--sweep-module-channels', type=int, nargs='+',
        help='also count OSA-FPN for these module widths (no timing)')
    parser.add_argument('--sweep-layers', type=int, nargs='+', default=[1],
                        help='layer counts of the sweep (default 1)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    register_all_modules()
    torch.set_num_threads(args.threads)
    shapes = vovnet_feature_shapes(args.arch, tuple(args.shape))
    norm_cfg = GN32 if args.norm == 'gn' else dict(type='BN')
    print(f'{args.arch} features for a {args.shape[0]}x{args.shape[1]} image '
          f'(padded to 32): {shapes}; {args.norm.upper()} necks, '
          f'{args.threads} thread(s)')
    configs = neck_configs([s[0] for s in shapes], args.out_channels,
                           args.num_outs, norm_cfg, args.osa_options)
    rows = benchmark_necks(configs, shapes, args.repeats, args.warmup,
                           not args.no_latency)
    print(format_neck_table(rows))
    if args.sweep_module_channels:
        print()
        print(format_neck_table(sweep_osa_settings(
            shapes, args.sweep_module_channels, args.sweep_layers,
            args.out_channels, args.num_outs, norm_cfg)))


if __name__ == '__main__':
    main()
