"""INT8 of trained detectors: held-out AP50 and latency of PyTorch, the FP32
ONNX graph and its INT8 quantization, in one process:
python tools/analysis/int8_benchmark.py --model LABEL CONFIG CHECKPOINT
    [--model ...] [--calib-images 64] [--method MinMax] [--threads 1]
    [--out docs/results] [--stem int8_cpu]

The logic is in :mod:`vovdet.analysis.int8` (docs/deploy.md, INT8).
"""
from vovdet.analysis.int8 import main
from vovdet.apis.common import run_cli

if __name__ == '__main__':
    run_cli(main)
