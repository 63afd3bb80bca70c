# The VoVNet paper's Table 4 setting for VoVNet-57: RefineDet320 fine-tuned
# on COCO from ImageNet weights (70.32M parameters, 33.9 AP on test-dev).
# Weights: timm's ImageNet `vovnet57a` (PyTorch stem), converted with
#   python tools/convert_weights.py --from timm --model vovnet57a \
#       vovnet57a.pth checkpoints/vovnet57a_vovdet.pth
_base_ = './vovnet39_refinedet320_coco_imagenet.py'

model = dict(
    backbone=dict(
        arch='V-57',
        init_cfg=dict(checkpoint='checkpoints/vovnet57a_vovdet.pth')))
