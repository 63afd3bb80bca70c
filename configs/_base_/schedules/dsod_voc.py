# DSOD's from-scratch VOC recipe (DSOD300_pascal.py): SGD, lr 0.1 for a
# batch of 128, momentum 0.9, weight decay 5e-4, x0.1 at 20k/40k/60k/80k
# iterations, stop at 100k. No warm-up, as in the Caffe solver.
max_iters = 100000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[20000, 40000, 60000, 80000],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))

# lr 0.1 is for 128 images per iteration (8 GPUs x 16); scale with the real
# batch via tools/train.py --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=128)
