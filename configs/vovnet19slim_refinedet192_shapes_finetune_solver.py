# The shapes RefineDet trained from scratch with RefineDet's *fine-tuning*
# solver, as every RefineDet config did before the from-scratch recipe:
# SGD lr 1e-3 per 32 images (2.5e-4 for this batch of 8, the linear rule of
# --auto-scale-lr), momentum 0.9, VoVNet-RefineDet's VOC weight decay 1e-4,
# no warm-up, no gradient clipping, x0.1 at 2/3 and 5/6 of the schedule
# (80k and 100k of 120k iterations in VoV39_VOC2007_320.py). The comparison
# row of docs/refinedet.md ("From scratch: recipe against fine-tuning
# solver"); everything else is vovnet19slim_refinedet192_shapes.py's.
_base_ = './vovnet19slim_refinedet192_shapes.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3 * 8 / 32, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end={{_base_.max_iters}},
        milestones=[1000, 1250],
        gamma=0.1)
]
