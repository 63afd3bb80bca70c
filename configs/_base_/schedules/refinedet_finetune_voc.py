# RefineDet's VOC *fine-tuning* solver (paper_specs.md §3;
# VoVNet-RefineDet examples/refinedet/VoV39_VOC2007_320.py, which starts
# from VoVNet39_ImageNet_Pretrained.caffemodel): batch 32, SGD lr 1e-3,
# momentum 0.9, weight decay 5e-4, x0.1 at 80k and 100k iterations, stop at
# 120k. No warm-up, as the Caffe solver. For ImageNet-initialised backbones
# only (the *_imagenet configs); from scratch use refinedet_scratch_voc.py.
# Iteration-based: the configs set by_epoch=False on the checkpoint hook and
# the log processor.
max_iters = 120000
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
        milestones=[80000, 100000],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4))

# lr 1e-3 is for 32 images per iteration (4 GPUs x 8); scale with the real
# batch via tools/train.py --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=32)
