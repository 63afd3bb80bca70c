# RefineDet320 + DenseNet-201 (k=32) on COCO, from scratch with BN: a
# baseline row of the VoVNet paper's Table 4. The ARM sources are the ends of
# dense blocks 2-4 (strides 8/16/32: 512/1792/1920 channels) + the extra
# bottleneck.
_base_ = './vovnet39_refinedet320_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DenseNet',
        arch='201',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False),
    neck=dict(in_channels=(512, 1792, 1920)),
    bbox_head=dict(in_channels=(512, 1792, 1920, 512)))
