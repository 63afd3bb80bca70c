# DSOD300 with VoVNet-27-slim, trained from scratch on VOC2007 trainval (the
# VoVNet paper's Table 2 uses 07+12: vovnet27slim_dsod300_voc0712.py). The
# paper gives only the totals (5.9M params, 5.6 GFLOPs); the wiring below is
# ours, see docs/dsod.md:
# - OSA stages 3/4/5 (strides 8/16/32: 256/384/512 channels, 37/18/9 px at
#   300) are DSOD's first three scales, fed to the head as they are;
# - three learn/reuse scales of 2 x 128 channels follow (5/3/2 px);
# - the stem is the paper's (third conv stride 1, max-pool before stage 2),
#   whose FLOPs the paper reports.
_base_ = './dsod300_voc07.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VoVNet',
        arch='V-27-slim',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        stem_stride_mode='paper',
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(
        in_channels=(256, 384, 512),
        reuse_channels=(0, 0),
        extra_channels=(128, 128, 128)),
    bbox_head=dict(in_channels=(256, 384, 512, 256, 256, 256)))
