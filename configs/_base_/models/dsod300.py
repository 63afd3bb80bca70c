# DSOD300 (Shen et al., ICCV 2017), trained from scratch: the DenseNet
# backbone DS/64-192-48-1, the dense prediction structure ("learning half,
# reusing half") and an SSD head with L2Norm + BN on six scales. Numbers
# from the official DSOD300_pascal.py (paper_specs.md §4).
model = dict(
    type='SingleStageDetector',
    # Caffe SSD's BGR mean (104, 117, 123) in RGB order, no std scaling.
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123, 117, 104],
        std=[1, 1, 1],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='DSODDenseNet',
        arch='DSOD300',
        out_indices=(1, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    # "First" (38x38, 800) as is; "Second" = block-4 transition (256) +
    # max-pooled First squeezed to 256; then four learn/reuse scales.
    neck=dict(
        type='DSODNeck',
        in_channels=(800, 256),
        reuse_channels=(256, ),
        extra_channels=(256, 128, 128, 128)),
    bbox_head=dict(
        type='DSODHead',
        num_classes=20,
        in_channels=(800, 512, 512, 256, 256, 256),
        l2_norm_scale=20.,
        norm_cfg=dict(type='BN', requires_grad=True),
        # VOC anchors: SSD's 20%..90% of 300 plus 10% for the first scale.
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            strides=[8, 16, 32, 64, 100, 300],
            ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            min_sizes=[30, 60, 111, 162, 213, 264],
            max_sizes=[60, 111, 162, 213, 264, 315]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2])),
    # MultiBox: IoU 0.5 matching (every GT also gets its best anchor), hard
    # negative mining 3:1, loss normalised by the positives.
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False),
    # DetectionOutput (DSOD300_pascal.py): confidence 0.01, top_k 400 per
    # class before NMS 0.45, keep_top_k 200.
    test_cfg=dict(
        nms_pre=400,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        score_thr=0.01,
        max_per_img=200))
