# Shared runtime: registers vovdet's modules into mmdet's registries.
default_scope = 'mmdet'
custom_imports = dict(imports=['vovdet'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # vovdet.engine: checkpoints a stock torch.load(weights_only=True)
    # reads, and a last_checkpoint relative to the work dir, written
    # atomically. atomic_local (vovdet.utils.fileio): a run killed mid-save
    # never leaves a truncated checkpoint behind.
    checkpoint=dict(
        type='PortableCheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # vovdet.engine: stop at the first NaN/inf loss, before a checkpoint of
    # the broken weights can be written.
    finite_loss=dict(type='FiniteLossHook'),
    visualization=dict(type='DetVisualizationHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when CUDA is unavailable.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
# mmdet's name, which its tools (browse_dataset.py, ...) need to build the
# visualizer; vovdet's own runners drop it (vovdet.apis.common.build_runner)
# so that several runs in one process each log to their own work dir.
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
