# RefineDet320 + VoVNet-39 trained from scratch on VOC2007 trainval, tested
# on VOC2007 test (mAP@0.5, 11-point and area). The from-scratch recipe is
# ScratchDet's (see vovnet39_refinedet320_coco.py): BN after every conv of
# the backbone, TCBs and inter blocks, lr 0.05 for a batch of 128 (8 GPUs x
# 16) with a 500-iteration warm-up, x0.1 at 40k/75k/90k, 100k iterations
# (_base_/schedules/refinedet_scratch_voc.py). The papers train on 07+12:
# vovnet39_refinedet320_voc0712.py. Fine-tuned from ImageNet, as
# VoVNet-RefineDet: vovnet39_refinedet320_voc07_imagenet.py.
_base_ = [
    './_base_/models/refinedet320_vovnet.py',
    './_base_/datasets/voc07_ssd320.py',
    './_base_/schedules/refinedet_scratch_voc.py',
    './_base_/default_runtime.py'
]

model = dict(
    bbox_head=dict(num_classes=20),
    # VoV39_VOC2007_320.py overrides the ARM matching on VOC (`#ywlee`):
    # positives at IoU >= 0.7, negatives below 0.3.
    train_cfg=dict(arm_assigner=dict(pos_iou_thr=0.7, neg_iou_thr=0.3)))
train_dataloader = dict(batch_size=16)

default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
