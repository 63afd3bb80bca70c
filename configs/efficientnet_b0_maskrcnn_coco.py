# EfficientNet-B0 Mask R-CNN + FPN from scratch, 3x. GroupNorm as in the
# base, but with 8 groups instead of 32: 32 does not divide B0's 16, 24, 40,
# 80, 112, 144 and 240 channels, while round_filters makes every width (and
# so every 6x expanded width) of every EfficientNet a multiple of 8.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VoVDetEfficientNet',
        arch='b0',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[24, 40, 112, 320]))
