# PASCAL VOC at 320x320 with SSD's augmentation, as RefineDet: VOC2007
# trainval -> VOC2007 test (and `voc12_trainval` for the *_voc0712 configs).
# The data are voc07_ssd300.py's (DSOD); what differs is the input size,
# RefineDet's augmentation (photometric distortion first, ImageNet mean for
# the zoom-out; no UseDifficultGT: VoV39_VOC2007_320.py has
# train_on_diff_gt = False, unlike DSOD), its batch and the two VOC metrics.
_base_ = './voc07_ssd300.py'
input_size = 320

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PhotoMetricDistortion', brightness_delta=32,
         contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
         hue_delta=18),
    # zoom out: paste into a canvas of up to 4x filled with the mean (RGB)
    dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True,
         ratio_range=(1, 4), prob=0.5),
    # keep the image, or crop 0.3-1 of each side with a minimum IoU with
    # some object of 0.1/0.3/0.5/0.7/0.9 or none
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
         min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

voc07_trainval = dict(pipeline=train_pipeline)
voc12_trainval = dict(pipeline=train_pipeline)

# 8 images per GPU x 4 GPUs = RefineDet's batch of 32.
train_dataloader = dict(batch_size=8, dataset=voc07_trainval)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# mAP at IoU 0.5 twice: VOC2007's 11-point interpolated AP (the papers'
# number) and the area under the PR curve (VOC2010+).
val_evaluator = [
    dict(type='VOCMetric', metric='mAP', eval_mode='11points',
         prefix='voc_11points'),
    dict(type='VOCMetric', metric='mAP', eval_mode='area',
         prefix='voc_area')
]
test_evaluator = val_evaluator
