"""Train DSOD shapes configs from scratch on a CPU and print their AP50:
python tools/analysis/dsod_learning.py [--config CFG ...] [--iters N]
    [--batch-size B] [--data-root DIR] [--work-dir DIR]

The logic is in :mod:`vovdet.analysis.dsod_learning`.
"""
from vovdet.analysis.dsod_learning import main
from vovdet.apis.common import run_cli

if __name__ == '__main__':
    run_cli(main)
