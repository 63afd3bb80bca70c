"""The learning benchmark with the RefineDet shapes config as its default:
python tools/analysis/refinedet_learning.py [--config CFG ...] [--iters N]
    [--batch-size B] [--data-root DIR] [--work-dir DIR]

The logic is in :mod:`vovdet.analysis.learning`.
"""
from functools import partial

from vovdet.analysis.learning import main
from vovdet.apis.common import run_cli

if __name__ == '__main__':
    run_cli(
        partial(
            main,
            default_config='configs/vovnet19slim_refinedet192_shapes.py',
            work_dir='work_dirs/refinedet_learning'))
