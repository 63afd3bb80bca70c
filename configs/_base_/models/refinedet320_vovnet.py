# RefineDet320 (Zhang et al., CVPR 2018) on VoVNet-39, the model of the
# VoVNet paper's Table 4 (VoVNet-RefineDet, VoV39_COCO_320.py; see
# paper_specs.md §2b and §3): the paper's Caffe stem, stages 3-5 + a
# stride-2 ResNet bottleneck 128-128-512 as the four ARM sources, 256-channel
# TCBs, a bottleneck 256-256-1024 ("inter" block) before every ARM and ODM
# head, 3 anchors per location. 56.28M parameters with 81 classes and the
# plain prediction convs of the Caffe heads (the from-scratch configs add
# BN after them, `pred_norm_cfg`).
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='RefineDet',
    # ImageNet mean/std (RGB); from-scratch training with BN.
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='VoVNet',
        arch='V-39',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        # the Caffe layout behind the paper's FLOPs (same parameters)
        stem_stride_mode='paper',
        norm_cfg=norm_cfg,
        norm_eval=False),
    neck=dict(
        type='RefineDetTCB',
        in_channels=(512, 768, 1024),
        out_channels=256,
        extra_mid_channels=128,
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='RefineDetHead',
        num_classes=80,
        in_channels=(512, 768, 1024, 512),
        feat_channels=256,
        inter_channels=256,
        norm_cfg=norm_cfg,
        # one size per level = 4 x stride, ratios {1/2, 1, 2}, cell centres
        anchor_generator=dict(
            type='AnchorGenerator',
            strides=[8, 16, 32, 64],
            ratios=[0.5, 1.0, 2.0],
            scales=[4],
            center_offset=0.5),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
        # objectness_score 0.01: drop anchors with background prob > 0.99
        neg_anchor_filter_thr=0.99),
    # ARM and ODM (on the refined anchors) both match at IoU 0.5/0.5: the
    # COCO scripts (VoVNet-RefineDet VoV39_COCO_320.py/_512.py) give the ARM
    # a copy of the ODM's MultiBoxLoss parameters with num_classes=2. The
    # VOC scripts override the ARM to 0.7/0.3 (the `#ywlee` lines of
    # VoV39_VOC2007_320.py), as the *_voc07 configs do. Every ground truth
    # also takes its best prior (min_pos_iou=0), as the Caffe bipartite
    # matching. Hard negative mining 3:1.
    train_cfg=dict(
        arm_assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        odm_assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        neg_pos_ratio=3),
    # DetectionOutput (VoV39_COCO_320.py and VoV39_VOC2007_320.py alike):
    # confidence 0.01, top_k 1000 per class before NMS 0.45, keep_top_k 500.
    test_cfg=dict(
        nms_pre=1000,
        score_thr=0.01,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        max_per_img=500))
