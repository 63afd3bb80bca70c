"""FPN, PAFPN, OSA-FPN and OSA-PAFPN: params, GFLOPs, MAC and CPU latency.

python tools/analysis/neck_benchmark.py [--shape H W] [--arch V-39]
    [--out-channels 256] [--norm gn|bn] [--repeats 10] [--warmup 2]
    [--threads 1] [--no-latency] [--inference-form] [--osa-options k=v ...]
    [--variant LABEL [k=v ...]] ... [--out DIR --name NAME]
    [--sweep-module-channels 64 128 ...] [--sweep-layers 1 2 ...]

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
                                            vovnet_feature_shapes,
                                            write_neck_report)


def parse_variant(words):
    """``LABEL k=v ...`` -> (label, options); values as mmengine's
    ``--cfg-options`` read them."""
    label, options = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition('=')
        if not sep or not key:
            raise SystemExit(f"--variant {label}: '{word}' is not key=value")
        options[key] = DictAction._parse_iterable(value)
    return label, options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Compare FPN, PAFPN, OSA-FPN and OSA-PAFPN on VoVNet '
        'feature shapes: params, multiply-adds, memory access cost and '
        'paired CPU latency')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[800, 1333],
        metavar=('H', 'W'), help='image size before padding to 32 '
        '(default 800 1333)')
    parser.add_argument('--arch', default='V-39',
                        help='VoVNet arch giving the feature shapes')
    parser.add_argument('--out-channels', type=int, default=256)
    parser.add_argument('--num-outs', type=int, default=5)
    parser.add_argument('--norm', choices=['gn', 'bn'], default='gn',
                        help='norm of every neck (default gn)')
    parser.add_argument('--gn-groups', type=int, default=32,
                        help='groups of --norm gn (default 32)')
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed rounds (default 10)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed rounds first (default 2)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1)')
    parser.add_argument('--no-latency', action='store_true',
                        help='counts only')
    parser.add_argument(
        '--inference-form', action='store_true',
        help='count and time every neck in its inference form (RepVGG '
        'fused, BatchNorm folded); needs --norm bn')
    parser.add_argument(
        '--osa-options', nargs='+', action=DictAction, default={},
        help='arguments of the two default OSA rows, e.g. '
        'layers_per_module=3')
    parser.add_argument(
        '--variant', nargs='+', action='append', default=[],
        metavar='LABEL [k=v', help='one more row: a label, then OSA neck '
        'arguments (type=OSAPAFPN for a PAFPN-type row), e.g. --variant '
        '"OSA-FPN rep" repvgg=True; repeat for more rows')
    parser.add_argument('--out', help='write <name>.md, .json and .png '
                        'into this folder')
    parser.add_argument('--name', default='necks',
                        help='file name stem of the --out files')
    parser.add_argument(
        '--sweep-module-channels', type=int, nargs='+',
        help='also count OSA-FPN for these 3x3 widths (no timing)')
    parser.add_argument('--sweep-layers', type=int, nargs='+', default=[1],
                        help='layer counts of the sweep (default 1)')
    args = parser.parse_args(argv)
    if args.inference_form and args.norm != 'bn':
        parser.error('--inference-form folds BatchNorm: add --norm bn '
                     '(GroupNorm cannot be folded)')
    return args


def main(argv=None):
    args = parse_args(argv)
    register_all_modules()
    torch.set_num_threads(args.threads)
    shapes = vovnet_feature_shapes(args.arch, tuple(args.shape))
    norm_cfg = dict(GN32, num_groups=args.gn_groups) if args.norm == 'gn' \
        else dict(type='BN')
    form = ', inference form' if args.inference_form else ''
    norm = f'GN({args.gn_groups})' if args.norm == 'gn' else 'BN'
    title = (f'{args.arch} features for a {args.shape[0]}x{args.shape[1]} '
             f'image (padded to 32): {shapes}; {norm} necks{form}, '
             f'{args.threads} thread(s)')
    print(title)
    variants = dict(parse_variant(words) for words in args.variant)
    configs = neck_configs([s[0] for s in shapes], args.out_channels,
                           args.num_outs, norm_cfg, args.osa_options,
                           variants)
    rows = benchmark_necks(configs, shapes, args.repeats, args.warmup,
                           not args.no_latency, args.inference_form)
    print(format_neck_table(rows))
    if args.out:
        paths = write_neck_report(rows, args.out, args.name, title)
        print('wrote ' + ', '.join(paths.values()))
    if args.sweep_module_channels:
        print()
        print(format_neck_table(sweep_osa_settings(
            shapes, args.sweep_module_channels, args.sweep_layers,
            args.out_channels, args.num_outs, norm_cfg)))


if __name__ == '__main__':
    main()
