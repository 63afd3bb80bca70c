# RefineDet320 + VoVNet-39 trained from scratch on COCO (the default; the
# VoVNet paper's Table 4 setting, fine-tuned from ImageNet weights, is
# vovnet39_refinedet320_coco_imagenet.py). The from-scratch recipe is
# ScratchDet's (Zhu et al., CVPR 2019):
# - BN after every conv of the backbone, the TCBs and the heads' inter
#   blocks; the architecture is Table 4's (56.28M parameters). The 3x3
#   prediction convs keep Caffe's bias; ScratchDet's BN after them
#   (`SSDBNHead`) is `bbox_head.pred_norm_cfg`, an option not measured to
#   help RefineDet (docs/refinedet.md);
# - SGD lr 0.05 for a batch of 128 (8 GPUs x 16) with a 500-iteration
#   warm-up, COCO repeated 5x per epoch, 52 epochs, x0.1 after 34/46/50
#   (_base_/schedules/refinedet_scratch_coco.py).
_base_ = [
    './_base_/models/refinedet320_vovnet.py',
    './_base_/datasets/coco_ssd320.py',
    './_base_/schedules/refinedet_scratch_coco.py',
    './_base_/default_runtime.py'
]

train_dataloader = dict(
    batch_size=16,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=5,
        dataset={{_base_.train_dataloader.dataset}}))
