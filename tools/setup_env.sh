#!/usr/bin/env bash
# Idempotent environment set-up for vovdet.
#
# Creates .venv if missing, keeps an already-installed torch (e.g. a GPU
# user's CUDA build), otherwise installs torch==2.13.0; builds mmcv==2.1.0
# with ops (the wheel is cached by pip, so a second clean clone does not
# rebuild); installs mmengine, mmdet, pycocotools, onnx and onnxruntime
# (the 'deploy' extra, so the tests cover the ONNX export) and vovdet itself.
# A second run on the same checkout installs nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOVDET_VENV:-$ROOT/.venv}"
BASE_PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    if "$BASE_PY" -c 'import torch' >/dev/null 2>&1; then
        # Reuse the interpreter's torch (possibly a CUDA build) instead of
        # replacing it with the CPU wheel.
        log "creating $VENV (sharing the base interpreter's torch)"
        "$BASE_PY" -m venv --system-site-packages "$VENV"
    else
        log "creating $VENV"
        "$BASE_PY" -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

# Fast path: everything at the pinned versions and vovdet importable from ROOT.
if "$PY" - "$ROOT" <<'PYEOF' >/dev/null 2>&1
import sys, importlib.metadata as md
import torch, mmcv, mmcv.ops, mmengine, mmdet, pycocotools, vovdet  # noqa: F401
import seaborn, psutil  # noqa: F401  (mmdet's analysis tools)
import mim  # noqa: F401  (openmim: mim search vovdet)
import onnx, onnxruntime  # noqa: F401  (the 'deploy' extra)
assert md.version('mmcv') == '2.1.0' and md.version('mmengine') == '0.10.7'
assert md.version('mmdet') == '3.3.0'
import os
assert os.path.dirname(os.path.dirname(os.path.abspath(vovdet.__file__))) == os.path.abspath(sys.argv[1])
PYEOF
then
    log "environment ready ($VENV)"
    exit 0
fi

if "$PY" -c 'import torch' >/dev/null 2>&1; then
    log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    log "installing torch==2.13.0"
    "${PIP[@]}" torch==2.13.0
fi

# mmcv's setup.py imports pkg_resources (gone in setuptools>=80) and must
# see torch, hence no build isolation.
"${PIP[@]}" 'setuptools<80' wheel ninja 'numpy>=2' opencv-python-headless
if ! "$PY" -c 'import importlib.metadata as m, mmcv.ops; assert m.version("mmcv") == "2.1.0"' >/dev/null 2>&1; then
    log "installing mmcv==2.1.0 with ops (first build takes ~11 min on 2 cores; pip caches the wheel)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" --no-build-isolation mmcv==2.1.0
fi

# seaborn and psutil: mmdet's analyze_logs.py and benchmark.py import them;
# onnx and onnxruntime: the 'deploy' extra (setup.py), for the ONNX tests
"${PIP[@]}" mmengine==0.10.7 mmdet==3.3.0 pycocotools pytest matplotlib \
    seaborn psutil onnx==1.23.2 onnxruntime==1.32.0
# openmim (`mim search vovdet`, docs/model_zoo.md) without its declared
# dependency opendatalab: mim never imports it, and its openxlab pins
# setuptools==60.2.0, requests, rich and tqdm down, breaking torch's
# setuptools>=77. These are the packages mim imports.
"${PIP[@]}" --no-deps openmim==0.3.9
"${PIP[@]}" --no-warn-conflicts click colorama model-index pandas requests \
    rich tabulate
"${PIP[@]}" --no-build-isolation --no-deps -e "$ROOT"
log "environment ready ($VENV)"
