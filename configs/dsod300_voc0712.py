# DSOD300 trained on VOC2007 + VOC2012 trainval, as in the paper (77.7 mAP
# on VOC2007 test, README of szq0214/DSOD).
_base_ = './dsod300_voc07.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        # VOCDataset sets a per-year `dataset_type` in its metainfo
        ignore_keys=['dataset_type'],
        datasets=[{{_base_.voc07_trainval}}, {{_base_.voc12_trainval}}]))
