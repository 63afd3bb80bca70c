# RefineDet320 + VoVNet-39 from scratch on VOC2007 trainval, tested on
# VOC2007 test (mAP@0.5, 11-point and area). RefineDet's VOC schedule
# (batch 32, lr 1e-3, x0.1 at 80k/100k, 120k iterations) with
# VoVNet-RefineDet's VOC weight decay 1e-4. The papers train on 07+12:
# vovnet39_refinedet320_voc0712.py.
_base_ = [
    './_base_/models/refinedet320_vovnet.py',
    './_base_/datasets/voc07_ssd320.py',
    './_base_/schedules/refinedet_voc.py', './_base_/default_runtime.py'
]

# DetectionOutput keeps 200 boxes per image on VOC
model = dict(
    bbox_head=dict(num_classes=20), test_cfg=dict(max_per_img=200))
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))

default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
