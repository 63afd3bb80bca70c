# mmdet's SSD in DSOD's shapes setting: the peer of
# vovnet27slim_dsod160_shapes.py in the learning-parity benchmark
# (docs/dsod.md, "Learning parity"). Everything but the detector is DSOD's:
# the VoVNet-27-slim backbone (paper stem, stages 3-5), 160 px inputs,
# DSOD's anchors scaled to 160 px, IoU 0.5 matching, 3:1 mining, the data,
# pipeline, batch, schedule, seed and test settings. The detector is mmdet's:
# `SingleStageDetector` + `SSDNeck` (three extra stride-2 levels of 256
# channels, 5 -> 3 -> 2 -> 1 px like DSOD's, BN as the backbone) + `SSDHead`
# (one plain 3x3 conv per output; `PredictableSSDHead` only works around
# mmdet 3.3's predict bug). DSOD's dense prediction structure, L2Norm and
# BN head are what the comparison measures.
_base_ = './vovnet27slim_dsod160_shapes.py'

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    _delete_=True,
    type='SingleStageDetector',
    data_preprocessor={{_base_.model.data_preprocessor}},
    backbone={{_base_.model.backbone}},
    neck=dict(
        type='SSDNeck',
        in_channels=(256, 384, 512),
        out_channels=(256, 384, 512, 256, 256, 256),
        level_strides=(2, 2, 2),
        level_paddings=(1, 1, 1),
        l2_norm_scale=None,
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='PredictableSSDHead',
        num_classes=4,
        in_channels=(256, 384, 512, 256, 256, 256),
        anchor_generator={{_base_.model.bbox_head.anchor_generator}},
        bbox_coder={{_base_.model.bbox_head.bbox_coder}}),
    train_cfg={{_base_.model.train_cfg}},
    test_cfg={{_base_.model.test_cfg}})
