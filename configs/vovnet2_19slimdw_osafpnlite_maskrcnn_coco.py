# VoVNetV2-19-slim-DW Mask R-CNN from scratch (GN, 3x) with "OSA-FPN lite":
# a 128-channel OSA-FPN (the width of detectron2's FPNLite) whose 3x3 layers
# are depthwise-separable, with eSE and the identity shortcut like the
# VoVNetV2 backbone; the RPN and RoI heads follow the 128-channel neck.
_base_ = './vovnet39_maskrcnn_coco.py'

# GN with 16 groups: the slim stages have 80 and 112 channels.
slim_norm_cfg = dict(type='GN', num_groups=16, requires_grad=True)
width = 128
model = dict(
    backbone=dict(arch='V2-19-slim-dw', norm_cfg=slim_norm_cfg),
    neck=dict(
        type='OSAFPN',
        in_channels=[112, 256, 384, 512],
        out_channels=width,
        depthwise=True,
        use_ese=True,
        identity=True,
        norm_cfg=slim_norm_cfg),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, conv_out_channels=width),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)))
