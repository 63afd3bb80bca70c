# The shapes demo (vovnet19slim_maskrcnn_shapes.py) with the backbone of
# repvgg_a0_maskrcnn_coco.py: RepVGG-A0 (RepVGG paper, Table 2: widths
# 48/48/96/192/1280, depths 1/2/4/14/1) with plain BN, the norm its three
# branches are defined with and the only one that folds into the deploy
# 3x3 conv (one CPU process, so BN rather than the COCO config's SyncBN).
# FPN and heads keep the demo's GN. Used by the INT8 study of docs/deploy.md
# (a trained RepVGG detector to quantize) and by tools/reparameterize.py.
_base_ = './vovnet19slim_maskrcnn_shapes.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepVGG',
        arch='A0',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[48, 96, 192, 1280]))
