# The shapes RefineDet with neither its ARM nor its transfer connection
# blocks: the ODM (inter block + 3x3 predictions) reads the source maps with
# the original anchors, every negative mined. This is mmdet's SSD of
# vovnet19slim_ssd192_shapes.py but for RefineDet's extra level (a stride-2
# bottleneck instead of SSDNeck's conv) and its inter blocks: against
# vovnet19slim_refinedet192_shapes_odm_only.py it measures what the TCB path
# costs. An ablation of the learning-parity study in docs/refinedet.md.
_base_ = './vovnet19slim_refinedet192_shapes_odm_only.py'

model = dict(
    neck=dict(transfer_connection=False),
    bbox_head=dict(feat_channels=(256, 384, 512, 256)))
