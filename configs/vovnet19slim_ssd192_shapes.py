# mmdet's SSD in RefineDet's shapes setting: the peer of
# vovnet19slim_refinedet192_shapes.py in the learning-parity benchmark
# (docs/refinedet.md, "Learning parity"). Everything but the detector is
# RefineDet's: the V2-19-slim backbone (PyTorch stem, stages 2-4), 192 px
# inputs, the anchors (one size of 4x the stride at strides 8-64, ratios
# 1/2, 1, 2, cell centres), IoU 0.5/0.5 matching with every ground truth
# taking its best anchor, 3:1 hard negative mining, smooth L1 (beta 1),
# SSD's variances, the data, pipeline, batch, schedule, seed and test
# settings. The detector is mmdet's: `SingleStageDetector` + `SSDNeck` (one
# extra stride-2 level of 256 channels, BN as the backbone) + `SSDHead` (one
# 3x3 conv per output; `PredictableSSDHead` only works around mmdet 3.3's
# predict bug).
_base_ = './vovnet19slim_refinedet192_shapes.py'

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    _delete_=True,
    type='SingleStageDetector',
    data_preprocessor={{_base_.model.data_preprocessor}},
    backbone={{_base_.model.backbone}},
    neck=dict(
        type='SSDNeck',
        in_channels=(256, 384, 512),
        out_channels=(256, 384, 512, 256),
        level_strides=(2, ),
        level_paddings=(1, ),
        l2_norm_scale=None,
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='PredictableSSDHead',
        num_classes=4,
        in_channels=(256, 384, 512, 256),
        anchor_generator={{_base_.model.bbox_head.anchor_generator}},
        bbox_coder={{_base_.model.bbox_head.bbox_coder}}),
    train_cfg=dict(
        assigner={{_base_.model.train_cfg.odm_assigner}},
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False),
    test_cfg={{_base_.model.test_cfg}})
