"""Heatmaps of how strongly each layer uses each earlier layer's features.

python tools/analysis/dense_connection_heatmap.py CONFIG CHECKPOINT
    [--out DIR] [--cfg-options k=v ...]

One PNG per VoVNet stage (a panel per OSA module) and per DenseNet dense
block, plus connection_strengths.json; see :mod:`vovdet.analysis.heatmap`.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from vovdet.analysis.heatmap import config_heatmaps


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Mean |w| of the input-channel groups of the aggregating '
        '1x1 convs of OSA modules and dense blocks, normalised per target '
        'layer, as heatmap PNGs')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument(
        '--out', help='output folder (default work_dirs/heatmaps/<config>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out or osp.join('work_dirs', 'heatmaps',
                               osp.splitext(osp.basename(args.config))[0])
    for path in config_heatmaps(args.config, args.checkpoint, out,
                                args.cfg_options):
        print(path)


if __name__ == '__main__':
    main()
