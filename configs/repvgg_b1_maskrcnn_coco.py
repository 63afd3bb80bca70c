# RepVGG-B1 Mask R-CNN + FPN from scratch, 3x. SyncBN in the backbone so
# that it can be re-parameterised (see repvgg_a0_maskrcnn_coco.py); FPN and
# heads keep the base's GN.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepVGG',
        arch='B1',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[128, 256, 512, 2048]))
