# The VoVNet paper's Table 4 setting: RefineDet320 + VoVNet-39 fine-tuned on
# COCO from ImageNet weights (VoVNet-RefineDet VoV39_COCO_320.py:
# pretrain_model VoVNet39_ImageNet_Pretrained.caffemodel). 56.28M
# parameters, 33.5 AP on test-dev in the paper. RefineDet's fine-tuning
# solver: batch 32, lr 1e-3, no warm-up, x0.1 at 280k/360k, 400k iterations
# (_base_/schedules/refinedet_finetune_coco.py). From scratch, use
# vovnet39_refinedet320_coco.py instead.
#
# Weights: timm's ImageNet `vovnet39a`, converted with
#   python tools/convert_weights.py --from timm --model vovnet39a \
#       vovnet39a.pth checkpoints/vovnet39a_vovdet.pth
# timm's VoVNet has the PyTorch stem (third stem conv 3x3/2, no max-pool
# before the first OSA stage), so the backbone here uses that layout
# (stem_stride_mode='pytorch'); the paper's Caffe stem (stride 1 + max-pool)
# has the same parameters, and its 32.6 GFLOPs are asserted with
# stem_stride_mode='paper' in tests/test_models/test_refinedet.py.
_base_ = [
    './_base_/models/refinedet320_vovnet.py',
    './_base_/datasets/coco_ssd320.py',
    './_base_/schedules/refinedet_finetune_coco.py',
    './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        stem_stride_mode='pytorch',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/vovnet39a_vovdet.pth')))

default_hooks = dict(checkpoint=dict(by_epoch=False, interval=40000))
log_processor = dict(by_epoch=False)
