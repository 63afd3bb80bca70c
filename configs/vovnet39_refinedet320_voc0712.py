# RefineDet320 + VoVNet-39 from scratch on VOC2007 + VOC2012 trainval, tested
# on VOC2007 test: the papers' VOC setting (RefineDet320 with VGG-16:
# 80.0 mAP).
_base_ = './vovnet39_refinedet320_voc07.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        # VOCDataset sets a per-year `dataset_type` in its metainfo
        ignore_keys=['dataset_type'],
        datasets=[{{_base_.voc07_trainval}}, {{_base_.voc12_trainval}}]))
