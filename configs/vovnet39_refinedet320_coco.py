# RefineDet320 + VoVNet-39 on COCO, trained from scratch with BN: the VoVNet
# paper's Table 4 model (56.28M parameters, 32.6 GFLOPs at 320x320; 33.5 AP
# on test-dev with an ImageNet-pretrained backbone). RefineDet's COCO
# schedule: batch 32, lr 1e-3, x0.1 at 280k/360k, 400k iterations.
_base_ = [
    './_base_/models/refinedet320_vovnet.py',
    './_base_/datasets/coco_ssd320.py',
    './_base_/schedules/refinedet_coco.py', './_base_/default_runtime.py'
]

default_hooks = dict(checkpoint=dict(by_epoch=False, interval=40000))
log_processor = dict(by_epoch=False)
