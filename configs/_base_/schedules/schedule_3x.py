# The paper's from-scratch 3x schedule (Table 5): 270k iterations at 16
# images per batch with steps at 210k and 250k = 36 COCO epochs with steps
# after epochs 28 and 33.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=36, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=36,
        by_epoch=True,
        milestones=[28, 33],
        gamma=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    # No weight decay on norm parameters when training from scratch.
    paramwise_cfg=dict(norm_decay_mult=0.))

# lr 0.02 is for 16 images (8 GPUs x 2); scale with the real batch via
# tools/train.py --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=16)
