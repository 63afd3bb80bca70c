# Neck ablation on the shapes data set, FPN side: the CPU demo config as it
# is (VoVNetV2-19-slim GN Mask R-CNN, 128-channel FPN, 750 iterations, seed
# 0). Its partner vovnet19slim_osafpn_maskrcnn_shapes_ablation.py differs
# only in the neck type. Run both with tools/analysis/neck_ablation.py.
_base_ = './vovnet19slim_maskrcnn_shapes.py'
model = dict(neck=dict(type='FPN'))
