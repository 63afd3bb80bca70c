#!/usr/bin/env bash
# Every measurement of docs/benchmarks.md, in sequence, on a quiet machine.
# Each table goes to $OUT/<name>.{md,png,json}; run it from anywhere:
#
#   tools/analysis/run_all_benchmarks.sh              # full sizes (30-60 min on 2 CPU cores)
#   QUICK=1 OUT=/tmp/bench tools/analysis/run_all_benchmarks.sh   # 64 px, 2 repeats: checks the script only
#
# Environment: PYTHON (default .venv/bin/python), OUT (default docs/results),
# THREADS (default: all cores), DEVICE (default auto = CUDA if available).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-docs/results}
THREADS=${THREADS:-$(nproc)}
DEVICE=${DEVICE:-auto}

if [ "${QUICK:-0}" = 1 ]; then
    SMALL=(64 64); LARGE=(64 96); DET320=(64 64)
    BACKBONE_RUNS=(--repeats 2 --warmup 1)
    DETECTOR_RUNS=(--repeats 2 --warmup 1)
    PEAK=(--gemm-size 128 --peak-convs 16x32)
else
    SMALL=(512 512); LARGE=(800 1333); DET320=(320 320)
    BACKBONE_RUNS=(--repeats 30 --warmup 5)
    DETECTOR_RUNS=(--repeats 5 --warmup 2)
    PEAK=()
fi
COMMON=(--out "$OUT" --threads "$THREADS" --device "$DEVICE" "${PEAK[@]}")
TABLE=("$PYTHON" tools/analysis/paper_table.py "${COMMON[@]}")

# 1. Every backbone's GFLOP/s at 512x512 against the measured 3x3-conv peak,
#    and the speed-up of inference-mode fusion (conv+BN folding; RepVGG's
#    deploy form) per model.
"${TABLE[@]}" --name "backbones_${SMALL[0]}x${SMALL[1]}" \
    --title "Backbones at ${SMALL[0]}x${SMALL[1]}: compute efficiency and fusion speed-ups" \
    --shape "${SMALL[@]}" "${BACKBONE_RUNS[@]}" --backbones \
    VoVNet-27-slim VoVNet-27-slim+fuse \
    VoVNet-39 VoVNet-39+fuse VoVNet-39+fuse+channels-last \
    VoVNet-57 VoVNet-57+fuse \
    VoVNetV2-39 VoVNetV2-39+fuse \
    ResNet-50 ResNet-50+fuse \
    ResNet-101 ResNet-101+fuse \
    DenseNet-121 DenseNet-121+fuse \
    DenseNet-201 DenseNet-201+fuse \
    RepVGG-A0 RepVGG-A0+deploy \
    RepVGG-B1 RepVGG-B1+deploy RepVGG-B1+deploy+channels-last \
    EfficientNet-B0 EfficientNet-B0+fuse

# 1b. RepVGG's training form vs its deploy form at detection size on one
#     thread (docs/reparameterize.md).
"${PYTHON}" tools/analysis/paper_table.py --out "$OUT" --threads 1 \
    --device "$DEVICE" "${PEAK[@]}" --name "repvgg_deploy_${LARGE[0]}x${LARGE[1]}" \
    --title "RepVGG training vs deploy form at ${LARGE[0]}x${LARGE[1]}, one thread" \
    --shape "${LARGE[@]}" "${DETECTOR_RUNS[@]}" --backbones \
    RepVGG-A0 RepVGG-A0+deploy RepVGG-B1 RepVGG-B1+deploy

# 1c. The other backbones the configs use, in the same layout: the small
#     and the large end of VoVNetV2, DenseNet-161 (in the paper's Table 4
#     study) and EfficientNet-B3.
"${TABLE[@]}" --name "backbones_more_${SMALL[0]}x${SMALL[1]}" \
    --title "More backbones at ${SMALL[0]}x${SMALL[1]}: compute efficiency and fusion speed-ups" \
    --shape "${SMALL[@]}" "${BACKBONE_RUNS[@]}" --backbones \
    VoVNetV2-19-slim-dw VoVNetV2-19-slim-dw+fuse \
    VoVNetV2-99 VoVNetV2-99+fuse \
    DenseNet-161 DenseNet-161+fuse \
    EfficientNet-B3 EfficientNet-B3+fuse

# 2. The paper's Table 4 comparison on this hardware: VoVNet-39 vs
#    ResNet-50 vs DenseNet-201 backbones at 512x512 and 800x1333.
for SHAPE in "${SMALL[*]}" "${LARGE[*]}"; do
    read -r H W <<< "$SHAPE"
    "${TABLE[@]}" --name "table4_backbones_${H}x${W}" \
        --title "VoVNet-39 vs ResNet-50 vs DenseNet-201 backbones at ${H}x${W}" \
        --shape "$H" "$W" "${BACKBONE_RUNS[@]}" \
        --backbones VoVNet-39 ResNet-50 DenseNet-201
done

# 2b. Table 4 itself: the RefineDet320 detectors end to end (BN, so the
#     conv+BN-folded form is timed as well).
"${TABLE[@]}" --name table4_refinedet320 \
    --title "RefineDet320 detectors at ${DET320[0]}x${DET320[1]} (paper Table 4 layout)" \
    --part detector --shape "${DET320[@]}" "${BACKBONE_RUNS[@]}" --configs \
    configs/vovnet39_refinedet320_coco.py configs/vovnet39_refinedet320_coco.py+fuse \
    configs/resnet50_refinedet320_coco.py configs/resnet50_refinedet320_coco.py+fuse \
    configs/densenet201_refinedet320_coco.py configs/densenet201_refinedet320_coco.py+fuse \
    configs/vovnet57_refinedet320_coco.py configs/vovnet57_refinedet320_coco.py+fuse

# 3. End-to-end Mask R-CNN (GN, from scratch) inference at 800x1333:
#    preprocessing, backbone, FPN, RPN, RoI heads, post-processing. A
#    score threshold of 0 keeps max_per_img=100 detections, so the mask
#    head runs as it does with trained weights.
"${TABLE[@]}" --name maskrcnn_inference \
    --title "Mask R-CNN (GN, scratch) inference at ${LARGE[0]}x${LARGE[1]}" \
    --part detector --shape "${LARGE[@]}" "${DETECTOR_RUNS[@]}" \
    --configs configs/vovnet39_maskrcnn_coco.py configs/resnet50_maskrcnn_coco.py \
    --cfg-options model.test_cfg.rcnn.score_thr=0.0

# 4. Mask R-CNN training iterations (train_step: forward, loss, backward,
#    SGD step) at 800x1333, 2 images per batch as in the paper's recipe.
"${TABLE[@]}" --name maskrcnn_train \
    --title "Mask R-CNN (GN, scratch) training iteration, 2 x ${LARGE[0]}x${LARGE[1]}" \
    --part detector --mode train --batch 2 --shape "${LARGE[@]}" "${DETECTOR_RUNS[@]}" \
    --configs configs/vovnet39_maskrcnn_coco.py configs/resnet50_maskrcnn_coco.py

echo "tables written to $OUT"
