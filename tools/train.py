"""Train a detector: python tools/train.py CONFIG [--work-dir DIR] [...]"""
from vovdet.apis.common import run_cli
from vovdet.apis.train import main

if __name__ == '__main__':
    run_cli(main)
