from .checkpoint import checkpoint_keep_running_stats, keep_running_stats
from .osa import OSAModule, OSAStage, osa_conv3x3
from .repvgg_block import RepVGGBlock, fuse_repvgg_blocks
from .res_bottleneck import res_bottleneck
from .sparse_roi_align import (SparseRoIAlign, register_roi_layers,
                               sparse_roi_align)

__all__ = [
    'OSAModule', 'OSAStage', 'osa_conv3x3', 'checkpoint_keep_running_stats',
    'keep_running_stats', 'res_bottleneck', 'RepVGGBlock',
    'fuse_repvgg_blocks', 'SparseRoIAlign', 'sparse_roi_align',
    'register_roi_layers'
]
