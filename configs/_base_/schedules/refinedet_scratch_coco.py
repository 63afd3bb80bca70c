# RefineDet's from-scratch COCO solver: ScratchDet's COCO schedule
# (KimSoybean/ScratchDet mmdetection/configs/ssd300_scratchdet_coco.py:
# SGD lr 0.05, momentum 0.9, weight decay 5e-4, linear warm-up over 500
# iterations from 1/3, COCO train2017 repeated 5x per epoch, 52 epochs with
# x0.1 after epochs 34, 46 and 50), for ScratchDet's batch of 128 (the
# Caffe scripts' batch_size; refinedet_scratch_voc.py). Epoch-based like
# that file: the configs wrap the training set in RepeatDataset(times=5).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=52, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1 / 3, by_epoch=False, begin=0,
         end=500),
    dict(
        type='MultiStepLR',
        by_epoch=True,
        begin=0,
        end=52,
        milestones=[34, 46, 50],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))

# lr 0.05 is for 128 images per iteration (8 GPUs x 16); scale with the real
# batch via tools/train.py --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=128)
