# VoVNet-57-GN Mask R-CNN from scratch, 3x (paper Table 5: 41.9 / 37.0).
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(backbone=dict(arch='V-57'))
