# VoVNetV2-99 Mask R-CNN from scratch, 3x. Same stage widths as V-39.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(backbone=dict(arch='V2-99'))
