# DSOD300 / VoVNet-27-slim trained from scratch on COCO 2017 train with
# DSOD's COCO recipe (DSOD300_coco.py): 80 classes, anchors from 7% (first
# scale) and 15%..90% of 300, 320k iterations.
_base_ = [
    './_base_/models/dsod300.py', './_base_/datasets/coco_ssd300.py',
    './_base_/schedules/dsod_coco.py', './_base_/default_runtime.py'
]

# The VoVNet-27-slim wiring of vovnet27slim_dsod300_voc07.py.
model = dict(
    backbone=dict(
        _delete_=True,
        type='VoVNet',
        arch='V-27-slim',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        stem_stride_mode='paper',
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(
        in_channels=(256, 384, 512),
        reuse_channels=(0, 0),
        extra_channels=(128, 128, 128)),
    bbox_head=dict(
        num_classes=80,
        in_channels=(256, 384, 512, 256, 256, 256),
        anchor_generator=dict(
            min_sizes=[21, 45, 99, 153, 207, 261],
            max_sizes=[45, 99, 153, 207, 261, 315])))

# iteration-based checkpoints and logs for the iteration-based schedule
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=20000))
log_processor = dict(by_epoch=False)
