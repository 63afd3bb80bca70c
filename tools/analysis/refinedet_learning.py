"""Train the RefineDet shapes config from scratch on a CPU and print its
held-out VOC AP50 and loss curves:
python tools/analysis/refinedet_learning.py [--config CFG] [--iters N]
    [--batch-size B] [--data-root DIR] [--work-dir DIR]

The logic is in :mod:`vovdet.analysis.refinedet_learning`.
"""
from vovdet.analysis.refinedet_learning import main
from vovdet.apis.common import run_cli

if __name__ == '__main__':
    run_cli(main)
