# The shapes RefineDet without the per-head "inter" bottlenecks, i.e. the
# head of the official VGG-16 RefineDet (sfzhang15/RefineDet,
# examples/refinedet/VGG16_COCO_320.py: CreateRefineDetHead without
# inter_layer_depth, so the 3x3 predictions read the source and TCB maps
# directly); the inter ResBodies belong to the official ResNet-101 and
# VoVNet-RefineDet scripts (inter_layer_depth=[1, 1, 1, 1]), which the base
# config follows. TCBs, ARM, the two-step cascade and the negative anchor
# filter as the base config. The best RefineDet of the learning-parity study
# in docs/refinedet.md.
_base_ = './vovnet19slim_refinedet192_shapes.py'

model = dict(bbox_head=dict(inter_channels=None))
