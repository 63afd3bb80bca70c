# DSOD300 with DenseNet-67 (DSOD300_smallest, DS/64-64-16-1: 5.9M params):
# the VoVNet paper's Table 2 baseline. The neck and head are DSOD300's; only
# the "First" scale is narrower (128 + 14 * 16 = 352 channels).
_base_ = './dsod300_voc07.py'

model = dict(
    backbone=dict(arch='DenseNet-67'),
    neck=dict(in_channels=(352, 256)),
    bbox_head=dict(in_channels=(352, 512, 512, 256, 256, 256)))
