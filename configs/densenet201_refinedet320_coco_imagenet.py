# The VoVNet paper's Table 4 baseline row: RefineDet320 + DenseNet-201
# fine-tuned on COCO from ImageNet weights (56.13M parameters; 32.5 AP in the
# paper), with the ARM sources of densenet201_refinedet320_coco.py.
# Weights: torchvision's ImageNet `densenet201`, converted with
#   python tools/convert_weights.py --from torchvision --model densenet201 \
#       densenet201.pth checkpoints/densenet201_vovdet.pth
_base_ = './vovnet39_refinedet320_coco_imagenet.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DenseNet',
        arch='201',
        out_indices=(1, 2, 3),
        out_type='transition',
        frozen_stages=-1,
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/densenet201_vovdet.pth')),
    neck=dict(in_channels=(256, 896, 1920)),
    bbox_head=dict(in_channels=(256, 896, 1920, 512)))
