# VoVNet-39-GN Mask R-CNN from scratch, 3x, with the OSA-FPN neck instead of
# FPN (docs/necks.md). Everything else, GN(32) in the neck included, comes
# from the FPN config; OSA-FPN takes FPN's arguments unchanged.
_base_ = './vovnet39_maskrcnn_coco.py'
model = dict(neck=dict(type='OSAFPN'))
