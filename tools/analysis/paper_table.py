"""Benchmark several models side by side, paper Tables 2/4 layout.

python tools/analysis/paper_table.py [--configs CFG[+fuse] ...]
    [--backbones NAME|Type:k=v[+deploy][+fuse] ...] --out docs/results/
    [--name NAME] [--title TITLE] [--shape H W] [--batch N] [--repeats R]
    [--warmup W] [--part backbone|detector] [--mode inference|train]
    [--threads T] [--device DEV] [--in-process] [--no-paired]
    [--cfg-options k=v ...]

Writes NAME.md (table), NAME.png (latency and energy vs FLOPs) and
NAME.json into --out. See docs/benchmarks.md and
:mod:`vovdet.analysis.paper_table`.
"""
import argparse

from mmengine.config import DictAction

from vovdet.analysis.benchmark import (MODES, PARTS, RAPL_ROOT,
                                       BenchmarkSettings)
from vovdet.analysis.paper_table import (BACKBONE_SPECS, parse_entry,
                                         run_table, write_table)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark configs and/or backbones side by side and '
        'write a markdown table + latency/energy-vs-FLOPs plot')
    parser.add_argument(
        '--configs', nargs='+', default=[],
        help='config paths, each optionally with +deploy, +fuse, '
        '+channels-last, +fp16')
    parser.add_argument(
        '--backbones', nargs='+', default=[],
        help=f"named backbones ({', '.join(BACKBONE_SPECS)}) or "
        "'Type:key=value,...', each optionally with +deploy, +fuse, "
        '+channels-last, +fp16')
    parser.add_argument('--out', default='docs/results',
                        help='output folder (default docs/results)')
    parser.add_argument('--name', default='benchmark',
                        help='file stem of the outputs (default benchmark)')
    parser.add_argument('--title', help='table heading (default: --name)')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512],
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=50)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--part', choices=PARTS, default='backbone')
    parser.add_argument('--mode', choices=MODES, default='inference')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--threads', type=int)
    parser.add_argument('--rapl-root', default=RAPL_ROOT)
    parser.add_argument(
        '--gemm-size', type=int, default=2048,
        help='n of the n^3 GEMM of the machine peak (default 2048)')
    parser.add_argument(
        '--peak-convs', nargs='+', default=['128x128', '256x64', '512x32'],
        metavar='CxS', help='3x3 convs of the machine peak as '
        'CHANNELSxSIZE (default 128x128 256x64 512x32)')
    parser.add_argument(
        '--in-process', action='store_true',
        help='run every model in this process instead of a fresh one each '
        '(faster start-up; a model may then inherit warmed-up kernels and '
        'allocator caches from the previous one)')
    parser.add_argument(
        '--no-paired', action='store_true',
        help='skip timing each model in turns with its variants and the '
        'conv peak (the paired speed-ups and peak fractions)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='overrides applied to every --configs entry')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.configs and not args.backbones:
        raise SystemExit('give --configs and/or --backbones')
    cfg_options = dict(args.cfg_options) if args.cfg_options else None
    entries = [parse_entry(c, 'config', cfg_options) for c in args.configs]
    entries += [parse_entry(b, 'backbone') for b in args.backbones]
    settings = BenchmarkSettings(
        shape=tuple(args.shape),
        batch=args.batch,
        repeats=args.repeats,
        warmup=args.warmup,
        part=args.part,
        mode=args.mode,
        device=args.device,
        threads=args.threads,
        rapl_root=args.rapl_root)
    peak_convs = [tuple(int(v) for v in c.split('x')) for c in args.peak_convs]
    table = run_table(
        entries,
        settings,
        title=args.title or args.name,
        isolate=not args.in_process,
        peak_kwargs=dict(gemm_size=args.gemm_size, conv_shapes=peak_convs),
        paired=not args.no_paired)
    paths = write_table(table, args.out, args.name)
    with open(paths['markdown']) as f:
        print(f.read())
    for kind, path in paths.items():
        print(f'{kind}: {path}')


if __name__ == '__main__':
    main()
