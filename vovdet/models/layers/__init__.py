from .checkpoint import checkpoint_keep_running_stats, keep_running_stats
from .osa import OSAModule, OSAStage, osa_conv3x3
from .res_bottleneck import res_bottleneck

__all__ = [
    'OSAModule', 'OSAStage', 'osa_conv3x3', 'checkpoint_keep_running_stats',
    'keep_running_stats', 'res_bottleneck'
]
