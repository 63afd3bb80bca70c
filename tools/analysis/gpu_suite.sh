#!/usr/bin/env bash
# The GPU measurement suite in one command (docs/benchmarks.md, "GPU suite"):
# paper Tables 4 and 5, energy per image, training throughput and backbone
# efficiency on cuda:0 within a time budget.
#
#   tools/analysis/gpu_suite.sh --prepare           # here (PyPI reachable): wheels into .gpu_wheels/
#   tools/analysis/gpu_suite.sh [--out DIR] [--budget-min N]   # on the GPU machine, .gpu_wheels carried
#   tools/analysis/gpu_suite.sh --dry-run --out /tmp/suite     # anywhere: every step on the CPU, tiny shapes
#
# When mmengine/mmcv/mmdet are not importable, the wheels in $WHEELS are
# installed into $SITE first (seconds; counted in the budget). mmcv is the
# pure-Python build (no compiled ops); VOVDET_MMCV_OPS=auto then backs
# mmcv.ops with torchvision (vovdet/utils/mmcv_ops.py).
#
# Environment: PYTHON (default .venv/bin/python if present, else python3),
# WHEELS (default .gpu_wheels), SITE (default /tmp/vovdet-site),
# VOVDET_MMCV_OPS (default auto).
set -euo pipefail
START=$(date +%s)
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
WHEELS=${WHEELS:-.gpu_wheels}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ "${1:-}" = --prepare ]; then
    # Pinned pure-Python packages, plus the two binary wheels mmdet imports
    # (pycocotools, shapely) and onnx (+ the protobuf it needs) for the
    # ONNX step, for the GPU machine's CPython 3.12; everything else the
    # suite needs is installed there (torch, torchvision, numpy,
    # opencv-python-headless, scipy, matplotlib, rich, pyyaml, timm,
    # onnxruntime, ...). ONNX Runtime's CUDA provider needs onnxruntime-gpu
    # there; without it the ONNX step says it could not run.
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip download --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" mmengine==0.10.7 mmdet==3.3.0 addict==2.4.0 \
        yapf==0.43.0 platformdirs==4.14.9 terminaltables==3.1.10 \
        termcolor==3.3.0 pycocotools==2.0.11 shapely==2.2.0 onnx==1.23.2 \
        protobuf==7.36.2
    # mmcv 2.1.0 has no wheel on PyPI: build the pure-Python one
    # (MMCV_WITH_OPS=0) from the sdist. Its setup.py imports pkg_resources,
    # hence no build isolation and the venv's setuptools<80.
    "$PYTHON" -m pip download --disable-pip-version-check --no-deps \
        --no-binary :all: -d "$WHEELS/sdist" mmcv==2.1.0
    MMCV_WITH_OPS=0 "$PYTHON" -m pip wheel --disable-pip-version-check \
        --no-deps --no-build-isolation -w "$WHEELS" \
        "$WHEELS/sdist/mmcv-2.1.0.tar.gz"
    rm -rf "$WHEELS/sdist"
    du -sh "$WHEELS"
    exit 0
fi

if ! "$PYTHON" -c 'import mmengine, mmcv, mmdet' >/dev/null 2>&1; then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "mmengine/mmcv/mmdet are not importable by $PYTHON and $WHEELS/" \
             "holds no wheels: run tools/analysis/gpu_suite.sh --prepare" \
             "where PyPI is reachable and bring $WHEELS along" >&2
        exit 1
    fi
    SITE=${SITE:-/tmp/vovdet-site}
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-index \
        --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "[suite] installed the wheels of $WHEELS into $SITE in" \
         "$(( $(date +%s) - START )) s"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export VOVDET_MMCV_OPS=${VOVDET_MMCV_OPS:-auto}
exec "$PYTHON" tools/analysis/gpu_suite.py --started-at "$START" "$@"
