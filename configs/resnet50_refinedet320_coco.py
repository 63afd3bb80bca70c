# RefineDet320 + ResNet-50 on COCO, from scratch with BN: the baseline row of
# the VoVNet paper's Table 4 (63.46M parameters, 25.43 GFLOPs). Only the
# backbone and the channels of its stride 8/16/32 stages (res3/res4/res5:
# 512/1024/2048) change. The Caffe (MSRA) block layout, stride on the first
# 1x1 conv, is the one behind the paper's FLOPs (25.40G; 25.87G with the
# stride on the 3x3, style='pytorch').
_base_ = './vovnet39_refinedet320_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False,
        style='caffe',
        init_cfg=None),
    neck=dict(in_channels=(512, 1024, 2048)),
    bbox_head=dict(in_channels=(512, 1024, 2048, 512)))
