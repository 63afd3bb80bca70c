# RefineDet's from-scratch COCO solver: ScratchDet's COCO schedule
# (KimSoybean/ScratchDet mmdetection/configs/ssd300_scratchdet_coco.py:
# SGD lr 0.05, momentum 0.9, weight decay 5e-4, linear warm-up over 500
# iterations from 1/3, COCO train2017 repeated 5x per epoch, 52 epochs with
# x0.1 after epochs 34, 46 and 50), for ScratchDet's batch of 128 (the
# Caffe scripts' batch_size; refinedet_scratch_voc.py). Epoch-based like
# that file: the configs wrap the training set in RepeatDataset(times=5).
_base_ = './refinedet_scratch_voc.py'

# epoch-based, unlike the VOC solver it inherits lr, momentum, weight decay,
# warm-up and batch from
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop', max_epochs=52, val_interval=4)
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
