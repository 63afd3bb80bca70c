# Neck ablation on the shapes data set, FPN side: the CPU demo config as it
# is (VoVNetV2-19-slim GN Mask R-CNN, 128-channel FPN, 600 iterations, seed
# 0). Its partners vovnet19slim_{pafpn,osafpn,osapafpn}_maskrcnn_shapes_
# ablation.py (and the osafpnrep/osafpnlite variants) differ only in the
# neck. Run them with tools/analysis/learning_benchmark.py (docs/necks.md).
_base_ = './vovnet19slim_maskrcnn_shapes.py'
model = dict(neck=dict(type='FPN'))
