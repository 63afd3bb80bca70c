# DSOD300 (DenseNet DS/64-192-48-1, 14.8M params) trained from scratch on
# VOC2007 trainval, tested on VOC2007 test. The paper trains on 07+12:
# dsod300_voc0712.py.
_base_ = [
    './_base_/models/dsod300.py', './_base_/datasets/voc07_ssd300.py',
    './_base_/schedules/dsod_voc.py', './_base_/default_runtime.py'
]

# iteration-based checkpoints and logs for the iteration-based schedule
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
