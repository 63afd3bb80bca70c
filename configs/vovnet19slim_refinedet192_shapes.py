# RefineDet on VoVNetV2-19-slim trained from scratch on the synthetic shapes
# dataset (VOC layout) at 192x192 on a CPU: used by the tests (a few
# iterations of tools/train.py) and the learning benchmarks
# (tools/analysis/refinedet_learning.py, docs/refinedet.md). Generate the
# data with tools/generate_shapes.py data/shapes (the benchmark does it
# itself). The structure is RefineDet320's (extra bottleneck, TCBs, inter
# blocks, ARM + ODM, 3 anchors of 4x the stride at strides 8-64) at a
# quarter of the widths, BN after every conv but the prediction convs; the
# shapes' 24-80 px objects fit the 32/64/128 px anchors without resizing the
# 192 px images.
_base_ = './vovnet39_refinedet320_voc07.py'

input_size = 192
model = dict(
    backbone=dict(arch='V2-19-slim', stem_stride_mode='pytorch'),
    neck=dict(
        in_channels=(256, 384, 512), out_channels=128, extra_mid_channels=64),
    bbox_head=dict(
        num_classes=4,
        in_channels=(256, 384, 512, 256),
        feat_channels=128,
        inter_channels=64),
    # The ARM matches at 0.5/0.5, the official COCO value (VoV39_COCO_320.py),
    # not VOC's 0.7/0.3: at 0.7 only 45 % of the shapes have any anchor above
    # the threshold (docs/refinedet.md, "Learning parity").
    train_cfg=dict(arm_assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.5)),
    test_cfg=dict(max_per_img=100))

data_root = 'data/shapes/'
metainfo = dict(
    classes=('rectangle', 'ellipse', 'triangle', 'hexagon'),
    palette=[(220, 20, 60), (0, 128, 255), (0, 200, 0), (255, 160, 0)])
# SSD's augmentation with a milder zoom-out (up to 2x): the shapes are
# already small.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PhotoMetricDistortion', brightness_delta=32,
         contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
         hue_delta=18),
    dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True,
         ratio_range=(1, 2), prob=0.5),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
         min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

# A short schedule for 8 images per iteration: linear warm-up, cosine decay,
# evaluated once at the end.
max_iters = 1500
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=100,
        end=max_iters,
        eta_min_ratio=0.01)
]
optim_wrapper = dict(
    optimizer=dict(lr=0.02, weight_decay=5e-4),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=20)
randomness = dict(seed=0)
