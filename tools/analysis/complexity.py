"""Params, FLOPs (multiply-adds), MAC and activation memory of a config.

python tools/analysis/complexity.py CONFIG [--shape H W]
    [--part backbone|neck|detector] [--per-layer] [--cfg-options k=v ...]

The counting rules are documented in :mod:`vovdet.analysis.complexity`.
"""
import argparse

from mmengine.config import DictAction

from vovdet.analysis import (format_layer_table, format_summary,
                             get_config_complexity)
from vovdet.analysis.complexity import PARTS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count params, FLOPs (multiply-adds), memory access cost '
        'and activation memory of the model of an mmdet config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[224, 224],
        metavar=('H', 'W'), help='input height and width (default 224 224)')
    parser.add_argument(
        '--part', choices=PARTS, default='backbone',
        help='what to count; detector = backbone + neck + dense heads '
        '(default backbone)')
    parser.add_argument(
        '--per-layer', action='store_true',
        help='also print one row per layer call')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. '
        'model.backbone.stem_stride_mode=paper')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = get_config_complexity(
        args.config, tuple(args.shape), args.part, args.cfg_options)
    if args.per_layer:
        print(format_layer_table(result))
        print()
    print(format_summary(result))


if __name__ == '__main__':
    main()
