# RefineDet's from-scratch VOC solver: ScratchDet's (Zhu et al., "ScratchDet:
# Training Single-Shot Object Detectors from Scratch", CVPR 2019), the
# published from-scratch recipe for SSD-style detectors with BN in the
# backbone and every head layer:
# - KimSoybean/ScratchDet caffe/ssd_pascal.py: batch 128, SGD momentum 0.9,
#   weight decay 5e-4, base_lr 0.05 (0.00004 x 50, x25 for VALID loss
#   normalisation), x0.1 at 40k/75k/90k, stop at 100k iterations;
# - KimSoybean/ScratchDet mmdetection/configs/ssd300_scratchdet_coco.py:
#   linear warm-up over 500 iterations from 1/3 of the learning rate.
# Iteration-based: the configs set by_epoch=False on the checkpoint hook and
# the log processor.
max_iters = 100000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1 / 3, by_epoch=False, begin=0,
         end=500),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[40000, 75000, 90000],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))

# lr 0.05 is for 128 images per iteration (8 GPUs x 16); scale with the real
# batch via tools/train.py --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=128)
