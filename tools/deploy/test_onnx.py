"""Evaluate an exported detector (FP32 or INT8 ONNX) on the config's test
set under ONNX Runtime: python tools/deploy/test_onnx.py CONFIG MODEL.onnx
[--threads N] (see docs/deploy.md)."""
from vovdet.apis.common import run_cli
from vovdet.apis.test_onnx import main

if __name__ == '__main__':
    run_cli(main)
