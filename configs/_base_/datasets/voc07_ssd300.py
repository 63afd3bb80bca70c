# PASCAL VOC at 300x300 with SSD's augmentation (DSOD, RefineDet): VOC2007
# trainval -> VOC2007 test. `voc12_trainval` is the VOC2012 half of the
# papers' 07+12 training set, used by the *_voc0712 configs. Point
# elsewhere with --cfg-options train_dataloader.dataset.data_root=...
dataset_type = 'VOCDataset'
data_root = 'data/VOCdevkit/'
backend_args = None
input_size = 300

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # DSOD300_pascal.py: train_on_diff_gt = True. VOC's `difficult` objects
    # are trained on; the test pipeline keeps them ignored for evaluation.
    dict(type='UseDifficultGT'),
    # zoom out: paste into a canvas of up to 4x filled with the mean (RGB)
    dict(type='Expand', mean=[123, 117, 104], to_rgb=True,
         ratio_range=(1, 4), prob=0.5),
    # SSD's batch samplers: keep the image or crop 0.3-1 of each side with a
    # minimum IoU with some object of 0.1/0.3/0.5/0.7/0.9
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
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

voc07_trainval = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='VOC2007/ImageSets/Main/trainval.txt',
    data_prefix=dict(sub_data_root='VOC2007/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline=train_pipeline,
    backend_args=backend_args)
voc12_trainval = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='VOC2012/ImageSets/Main/trainval.txt',
    data_prefix=dict(sub_data_root='VOC2012/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline=train_pipeline,
    backend_args=backend_args)

# 16 images per GPU x 8 GPUs = DSOD's batch of 128.
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=voc07_trainval)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='VOC2007/ImageSets/Main/test.txt',
        data_prefix=dict(sub_data_root='VOC2007/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# VOC2007 test: 11-point interpolated AP at IoU 0.5 (DSOD's ap_version).
val_evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='11points')
test_evaluator = val_evaluator
