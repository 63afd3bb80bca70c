# RefineDet320 + DenseNet-201 (k=32) on COCO, from scratch with BN: a
# baseline row of the VoVNet paper's Table 4. The ARM sources are the 1x1
# convs of transitions 2 and 3 before pooling (strides 8/16: 256/896
# channels), the end of dense block 4 (stride 32: 1920) and the extra
# bottleneck; only these taps give the paper's 56.13M parameters.
_base_ = './vovnet39_refinedet320_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DenseNet',
        arch='201',
        out_indices=(1, 2, 3),
        out_type='transition',
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False),
    neck=dict(in_channels=(256, 896, 1920)),
    bbox_head=dict(in_channels=(256, 896, 1920, 512)))
