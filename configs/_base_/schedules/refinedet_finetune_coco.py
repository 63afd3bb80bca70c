# RefineDet's COCO *fine-tuning* solver (paper_specs.md §3;
# VoVNet-RefineDet examples/refinedet/VoV39_COCO_320.py, which starts from
# VoVNet39_ImageNet_Pretrained.caffemodel): batch 32, SGD lr 1e-3, momentum
# 0.9, weight decay 5e-4, x0.1 at 280k and 360k iterations, stop at 400k. No
# warm-up, as the Caffe solver. For ImageNet-initialised backbones only (the
# *_imagenet configs); from scratch use refinedet_scratch_coco.py.
# Iteration-based: the configs set by_epoch=False on the checkpoint hook and
# the log processor.
_base_ = './refinedet_finetune_voc.py'

max_iters = 400000
train_cfg = dict(max_iters=max_iters, val_interval=40000)
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[280000, 360000],
        gamma=0.1)
]
