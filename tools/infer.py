"""Run a detector on images, folders and videos:
python tools/infer.py CONFIG_OR_NAME INPUTS... [--weights CKPT]
[--out-dir DIR] [--score-thr T] [--device D] [--deploy]
(see docs/inference.md)."""
from vovdet.apis.common import run_cli
from vovdet.apis.infer import main

if __name__ == '__main__':
    run_cli(main)
