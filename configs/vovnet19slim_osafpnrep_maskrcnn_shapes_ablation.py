# Neck ablation on the shapes data set, re-parameterisable OSA-FPN: the
# OSA-FPN side (vovnet19slim_osafpn_maskrcnn_shapes_ablation.py) with RepVGG
# 3x3 layers, which fold into one conv each for deployment
# (tools/reparameterize.py, tools/test.py --deploy, the ONNX exporter). Only
# BatchNorm folds, so this neck uses BN; the backbone keeps GN(16).
_base_ = './vovnet19slim_osafpn_maskrcnn_shapes_ablation.py'
model = dict(
    neck=dict(
        repvgg=True,
        norm_cfg=dict(_delete_=True, type='BN', requires_grad=True)))
