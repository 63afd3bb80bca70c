# DSOD300 / VoVNet-27-slim on VOC2007 + VOC2012 trainval, the setting of the
# VoVNet paper's Table 2 (74.8 mAP on VOC2007 test).
_base_ = './vovnet27slim_dsod300_voc07.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        # VOCDataset sets a per-year `dataset_type` in its metainfo
        ignore_keys=['dataset_type'],
        datasets=[{{_base_.voc07_trainval}}, {{_base_.voc12_trainval}}]))
