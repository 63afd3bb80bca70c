# Neck ablation on the shapes data set, OSA-PAFPN side: identical to
# vovnet19slim_fpn_maskrcnn_shapes_ablation.py (same backbone, heads, data,
# schedule and seed) except the neck, OSA-PAFPN with its defaults at the
# same width (128) and GN(16); compare with the PAFPN side.
_base_ = './vovnet19slim_fpn_maskrcnn_shapes_ablation.py'
model = dict(neck=dict(type='OSAPAFPN'))
