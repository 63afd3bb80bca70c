# DenseNet-201 Mask R-CNN + FPN from scratch, 3x (the paper's dense-
# connection baseline). The base's GN(32) fits: every DenseNet-201 norm has
# 64 + 32k channels.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DenseNet',
        arch='201',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False),
    neck=dict(in_channels=[256, 512, 1792, 1920]))
