# The VoVNet paper's Table 4 baseline row: RefineDet320 + ResNet-50 fine-tuned
# on COCO from ImageNet weights (63.46M parameters; 30.3 AP in the paper).
# Weights: torchvision's ImageNet ResNet-50 through mmdet's own loader
# (`torchvision://resnet50`, fetched on first use), hence the PyTorch block
# layout (stride on the 3x3 conv, 25.87 GFLOPs); the paper's 25.43 GFLOPs
# are the Caffe (MSRA) layout of resnet50_refinedet320_coco.py.
_base_ = './vovnet39_refinedet320_coco_imagenet.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet50')),
    neck=dict(in_channels=(512, 1024, 2048)),
    bbox_head=dict(in_channels=(512, 1024, 2048, 512)))
