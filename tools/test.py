"""Test a detector: python tools/test.py CONFIG CHECKPOINT [--out F] [...]"""
from vovdet.apis.common import run_cli
from vovdet.apis.test import main

if __name__ == '__main__':
    run_cli(main)
