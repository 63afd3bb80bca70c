# Mask R-CNN + FPN, VoVNet-39 with GroupNorm, trained from scratch on COCO
# with the 3x schedule (VoVNet paper, Table 5: 41.7 box AP / 36.8 mask AP).
_base_ = [
    '_base_/models/mask_rcnn_vovnet_fpn_gn.py',
    '_base_/datasets/coco_instance.py',
    '_base_/schedules/schedule_3x.py',
    '_base_/default_runtime.py',
]
