# The shapes RefineDet with its ARM switched off: not trained
# (RefineDetHead(arm_loss_weight=0)), not refining the ODM's anchors
# (cascade=False) and not filtering its negatives
# (neg_anchor_filter_thr=1.0). What is left is the ODM on the TCB features
# with the original anchors: an SSD with RefineDet's TCB/inter-block neck.
# An ablation of the learning-parity study in docs/refinedet.md: against
# vovnet19slim_refinedet192_shapes_no_cascade.py it measures what training
# the ARM on the shared backbone costs; against vovnet19slim_ssd192_shapes.py
# what the TCB path costs.
_base_ = './vovnet19slim_refinedet192_shapes.py'

model = dict(
    bbox_head=dict(
        cascade=False, neg_anchor_filter_thr=1.0, arm_loss_weight=0.0))
