# RepVGG-A0 Mask R-CNN + FPN from scratch, 3x: the VoVNet-39 recipe with
# the backbone swapped. The backbone uses SyncBN, not the base's GN: RepVGG
# is defined with BN branches (RepVGG paper, Sec. 3.3) and only BN/SyncBN
# fold into the single deploy conv (tools/reparameterize.py); GroupNorm
# normalises with per-sample statistics and cannot be folded. SyncBN keeps
# the batch statistics usable at 2 images per GPU. FPN and heads keep GN.
# On a CPU-only multi-process run use model.backbone.norm_cfg.type=BN.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepVGG',
        arch='A0',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[48, 96, 192, 1280]))
