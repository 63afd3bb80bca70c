# mmdet's ResNet-18 in the demo's Mask R-CNN: the peer of
# vovnet19slim_maskrcnn_shapes.py in the learning-parity benchmark
# (docs/get_started.md, "Learning parity"). Only the backbone differs:
# mmdet's `ResNet` (depth 18, PyTorch style) from scratch with the same GN
# (16 groups) as the VoVNet, all four stages into the same FPN; data,
# pipeline, heads, batch, schedule and seed are the demo's.
_base_ = './vovnet19slim_maskrcnn_shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]))
