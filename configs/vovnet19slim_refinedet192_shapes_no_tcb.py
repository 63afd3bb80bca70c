# The shapes RefineDet without its transfer connection blocks: the RefineDet
# paper's Table 3 ablation ("transfer connection block" off), where the ODM
# reads the same source maps as the ARM (RefineDetTCB(transfer_connection=
# False)). ARM training, the two-step cascade and the negative anchor filter
# stay on. An ablation of the learning-parity study in docs/refinedet.md.
_base_ = './vovnet19slim_refinedet192_shapes.py'

model = dict(
    neck=dict(transfer_connection=False),
    bbox_head=dict(feat_channels=(256, 384, 512, 256)))
