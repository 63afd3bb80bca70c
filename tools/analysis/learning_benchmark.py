"""Train shapes configs from scratch on a CPU and print their held-out AP50
and loss curves:
python tools/analysis/learning_benchmark.py --config CFG [CFG ...]
    [--iters N] [--batch-size B] [--data-root DIR] [--work-dir DIR]

The logic is in :mod:`vovdet.analysis.learning`.
"""
from vovdet.analysis.learning import main
from vovdet.apis.common import run_cli

if __name__ == '__main__':
    run_cli(main)
