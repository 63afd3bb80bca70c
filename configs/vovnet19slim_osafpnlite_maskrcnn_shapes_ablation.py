# Neck ablation on the shapes data set, OSA-FPN lite: the OSA-FPN side
# (vovnet19slim_osafpn_maskrcnn_shapes_ablation.py) with every 3x3 of the
# neck depthwise-separable, as PP-PicoDet's CSP-PAN (docs/necks.md).
_base_ = './vovnet19slim_osafpn_maskrcnn_shapes_ablation.py'
model = dict(neck=dict(depthwise=True))
