# DSOD / VoVNet-27-slim trained from scratch on the synthetic shapes dataset
# (VOC layout) at 160x160 on a CPU: used by the tests (a few iterations of
# tools/train.py) and the learning benchmark
# (tools/analysis/dsod_learning.py, docs/dsod.md). Generate the data with
# tools/generate_shapes.py data/shapes (the benchmark does it itself).
_base_ = './vovnet27slim_dsod300_voc07.py'

input_size = 160
# DSOD's anchors scaled by 160/300; the strides follow the map sizes at 160
# (20, 10, 5, 3, 2, 1), as DSOD's 8/16/32/64/100/300 follow 38..1 at 300.
model = dict(
    bbox_head=dict(
        num_classes=4,
        anchor_generator=dict(
            strides=[8, 16, 32, 53, 80, 160],
            min_sizes=[16, 32, 59.2, 86.4, 113.6, 140.8],
            max_sizes=[32, 59.2, 86.4, 113.6, 140.8, 168])))

data_root = 'data/shapes/'
metainfo = dict(
    classes=('rectangle', 'ellipse', 'triangle', 'hexagon'),
    palette=[(220, 20, 60), (0, 128, 255), (0, 200, 0), (255, 160, 0)])
# SSD's augmentation with a milder zoom-out (up to 2x): the shapes are
# already small.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Expand', mean=[123, 117, 104], to_rgb=True,
         ratio_range=(1, 2), prob=0.5),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
         min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=32,
         contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
         hue_delta=18),
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
max_iters = 1200
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
    optimizer=dict(lr=0.04), clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=20)
randomness = dict(seed=0)
