"""Accuracy versus latency of the shapes neck ablation: each config's
COCO AP (mean ± std over seeds, from learning-benchmark JSONs) beside its
neck's latency (from neck-benchmark JSONs), as a table and a PNG.

python tools/analysis/neck_tradeoff.py --learning RUNS.json [...]
    [--latency-dir docs/results/necks] [--metric coco/bbox_mAP]
    [--out docs/results/necks --name tradeoff]
"""
import argparse
import os
import os.path as osp

from vovdet.analysis.learning import load_results
from vovdet.analysis.neck_ablation import (format_tradeoff_table,
                                           plot_tradeoff, tradeoff_points)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--learning', nargs='+', required=True,
                        help='--out JSON files of learning_benchmark.py')
    parser.add_argument('--latency-dir', default='docs/results/necks')
    parser.add_argument('--metric', default='coco/bbox_mAP')
    parser.add_argument('--out', help='write <name>.md and <name>.png here')
    parser.add_argument('--name', default='tradeoff')
    args = parser.parse_args(argv)
    try:
        results = load_results(args.learning)
    except ValueError as err:
        parser.error(f'--learning {err}')
    try:
        points = tradeoff_points(results, args.latency_dir, args.metric)
    except (KeyError, OSError) as err:
        parser.error(err.args[0] if isinstance(err, KeyError) else str(err))
    table = format_tradeoff_table(points, args.metric)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(osp.join(args.out, f'{args.name}.md'), 'w') as f:
            f.write(table + '\n')
        plot_tradeoff(points, osp.join(args.out, f'{args.name}.png'),
                      args.metric)
        print(f'wrote {args.out}/{args.name}.md and .png')
    return points


if __name__ == '__main__':
    main()
