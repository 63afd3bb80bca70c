"""Shapes-data neck ablation: train the FPN, OSA-FPN, PAFPN and OSA-PAFPN
configs with the same seed and iterations, then print their final COCO
bbox/segm AP.

python tools/analysis/neck_ablation.py [--work-root work_dirs/neck_ablation]
    [--data-root data/shapes/] [--seed 0] [--max-iters N] [--configs A.py B.py]
    [--cfg-options k=v ...]
"""
import argparse

from vovdet.analysis.neck_ablation import (ABLATION_CONFIGS,
                                           format_ablation_table,
                                           run_ablation)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-root', default='work_dirs/neck_ablation')
    parser.add_argument(
        '--data-root', default='data/shapes/',
        help='shapes data (generated when missing, as by the demo)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--max-iters', type=int,
        help='train this many iterations (default: the configs\' schedule)')
    parser.add_argument('--configs', nargs='+', default=list(ABLATION_CONFIGS))
    parser.add_argument(
        '--cfg-options', nargs='+', default=[],
        help='overrides for every run, e.g. train_dataloader.batch_size=2')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = run_ablation(args.work_root, args.configs, args.seed,
                           args.max_iters, args.cfg_options, args.data_root)
    print(format_ablation_table(results))


if __name__ == '__main__':
    main()
