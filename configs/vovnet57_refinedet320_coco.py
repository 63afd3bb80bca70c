# RefineDet320 + VoVNet-57 on COCO, from scratch: the VoVNet paper's Table 4
# (70.32M parameters, 36.45 GFLOPs at 320x320; 33.9 AP on test-dev with an
# ImageNet-pretrained backbone).
_base_ = './vovnet39_refinedet320_coco.py'

model = dict(backbone=dict(arch='V-57'))
