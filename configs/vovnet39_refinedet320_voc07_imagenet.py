# RefineDet320 + VoVNet-39 fine-tuned on VOC2007 trainval from ImageNet
# weights, as VoVNet-RefineDet's VoV39_VOC2007_320.py (pretrain_model
# VoVNet39_ImageNet_Pretrained.caffemodel): Caffe's plain prediction convs,
# RefineDet's VOC fine-tuning solver (batch 32, lr 1e-3, no warm-up, x0.1 at
# 80k/100k, 120k iterations) with VoVNet-RefineDet's weight decay 1e-4. The
# weights and the stem layout are vovnet39_refinedet320_coco_imagenet.py's.
_base_ = [
    './_base_/models/refinedet320_vovnet.py',
    './_base_/datasets/voc07_ssd320.py',
    './_base_/schedules/refinedet_finetune_voc.py',
    './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        stem_stride_mode='pytorch',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/vovnet39a_vovdet.pth')),
    bbox_head=dict(num_classes=20),
    # VoV39_VOC2007_320.py, the `#ywlee` lines: ARM at IoU 0.7/0.3
    train_cfg=dict(arm_assigner=dict(pos_iou_thr=0.7, neg_iou_thr=0.3)))
# VoV39_VOC2007_320.py: 'weight_decay': 0.0001
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))

default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
