# The shapes RefineDet without two-step cascaded regression: the ODM matches
# and decodes from the original anchors instead of the ARM-refined ones
# (RefineDetHead(cascade=False), the ablation of the RefineDet paper's
# Table 3). Everything else, the ARM and its negative anchor filtering
# included, is vovnet19slim_refinedet192_shapes.py's. Used by the learning
# parity study in docs/refinedet.md, to tell whether the gap to mmdet's SSD
# comes from the cascade.
_base_ = './vovnet19slim_refinedet192_shapes.py'

model = dict(bbox_head=dict(cascade=False))
