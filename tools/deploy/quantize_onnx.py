"""INT8 static quantization of an exported detector, calibrated on the
config's training images:
python tools/deploy/quantize_onnx.py CONFIG MODEL.onnx OUT.onnx
[--calib-images 64] [--method MinMax] (see docs/deploy.md, INT8)."""
from vovdet.apis.common import run_cli
from vovdet.apis.quantize_onnx import main

if __name__ == '__main__':
    run_cli(main)
