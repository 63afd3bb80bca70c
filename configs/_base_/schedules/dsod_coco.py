# DSOD's from-scratch COCO recipe (DSOD300_coco.py): SGD, lr 0.1 for a
# batch of 128, momentum 0.9, weight decay 5e-4, x0.1 at 80k/140k/200k/260k
# iterations, stop at 320k.
_base_ = './dsod_voc.py'

max_iters = 320000
train_cfg = dict(max_iters=max_iters, val_interval=20000)
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[80000, 140000, 200000, 260000],
        gamma=0.1)
]