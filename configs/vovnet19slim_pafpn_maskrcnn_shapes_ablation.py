# Neck ablation on the shapes data set, PAFPN side: identical to
# vovnet19slim_fpn_maskrcnn_shapes_ablation.py (same backbone, heads, data,
# schedule and seed) except the neck, mmdet's PAFPN at the same width (128)
# and GN(16); the reference of vovnet19slim_osapafpn_maskrcnn_shapes_ablation.
_base_ = './vovnet19slim_fpn_maskrcnn_shapes_ablation.py'
model = dict(neck=dict(type='PAFPN'))
