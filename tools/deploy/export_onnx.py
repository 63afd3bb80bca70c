"""Export a trained detector to ONNX, post-processing included:
python tools/deploy/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H W]
[--dynamic] [--opset N] (see docs/deploy.md)."""
from vovdet.apis.common import run_cli
from vovdet.apis.export_onnx import main

if __name__ == '__main__':
    run_cli(main)
