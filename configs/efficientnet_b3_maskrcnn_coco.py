# EfficientNet-B3 Mask R-CNN + FPN from scratch, 3x. GroupNorm with 8
# groups: 32 does not divide B3's 24, 40, 48, 136, 144 ... channels; every
# EfficientNet width is a multiple of 8 (round_filters).
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VoVDetEfficientNet',
        arch='b3',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[32, 48, 136, 384]))
