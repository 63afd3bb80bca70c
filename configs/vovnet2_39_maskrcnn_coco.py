# VoVNetV2-39 (identity mapping + eSE, CenterMask) Mask R-CNN from scratch,
# 3x. Same stage widths as V-39, so only the arch changes.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(backbone=dict(arch='V2-39'))
