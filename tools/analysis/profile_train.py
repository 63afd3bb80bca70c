"""Profile training iterations of a config and report where their time goes:
python tools/analysis/profile_train.py CONFIG [--iters N] [--warmup W]
    [--threads T] [--data-root DIR] [--no-python-tracer] [--work-dir DIR]
    [--out FILE.md] [--cfg-options k=v ...]

The logic, and how the time is split into buckets, are in
:mod:`vovdet.analysis.profile_train`.
"""
from vovdet.analysis.profile_train import main
from vovdet.apis.common import run_cli

if __name__ == '__main__':
    run_cli(main)
