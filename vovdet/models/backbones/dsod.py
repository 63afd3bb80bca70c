"""DSOD's DenseNet backbone (the "stem + dense blocks" half of DSOD300).

Reference:
    Shen et al., "DSOD: Learning Deeply Supervised Object Detectors from
    Scratch", ICCV 2017 (Table 1, Sec. 3.1); official Caffe code
    ``szq0214/DSOD`` (``DSOD300_V3_Body`` in ``model_libs.py``).

Differences from an ImageNet DenseNet (paper_specs.md §4):

* a stem of three 3x3 conv-BN-ReLU (64 s2, 64, 128) and a 2x2 max-pool
  instead of one 7x7 conv;
* compression 1 (transitions keep the width) and **transitions without
  pooling** after dense blocks 3 and 4, so blocks 3 and 4 both run at
  stride 16 (19x19 at 300x300);
* every 2x2/2 max-pool rounds up (Caffe's pooling), so 300 -> 150 -> 75
  -> 38 -> 19.
"""
from typing import Sequence

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from .densenet import DenseBlock
from .base import StagedBackbone

# One row per variant; the variants differ only in data.
#   stem_channels: the three stem convs (3x3/2, 3x3, 3x3).
#   growth_rate: channels each dense layer adds (k).
#   bn_size: bottleneck width = bn_size * growth_rate (the 1x1 conv).
#   blocks_per_stage: dense layers in dense blocks 1..4.
#   last_transition_channels: output of the 1x1 transition after block 4
#       (the other transitions keep their block's width: compression 1).
# DSOD300 is the paper's DS/64-192-48-1 (README: 14.8M detector params).
# 'DSOD300-lite' (10.4M) and 'DenseNet-67' (DSOD300_smallest, 5.9M; the
# VoVNet paper's Table 2 baseline) were released as weights only; the rows
# below are our reconstruction, see docs/dsod.md.
arch_settings = {
    'DSOD300': dict(stem_channels=(64, 64, 128), growth_rate=48, bn_size=4,
                    blocks_per_stage=(6, 8, 8, 8),
                    last_transition_channels=256),
    'DSOD300-lite': dict(stem_channels=(64, 64, 128), growth_rate=36,
                         bn_size=4, blocks_per_stage=(6, 8, 8, 8),
                         last_transition_channels=256),
    'DenseNet-67': dict(stem_channels=(64, 64, 128), growth_rate=16,
                        bn_size=4, blocks_per_stage=(6, 8, 8, 8),
                        last_transition_channels=256),
}

# Stages 2 and 3 start with a 2x2/2 max-pool (DSOD's pooling after
# transition 1 and before dense block 3); stage 4 keeps stride 16.
_POOL_BEFORE_STAGE = (False, True, True, False)


def preact_conv(in_channels: int,
                out_channels: int,
                kernel_size: int,
                stride: int = 1,
                conv_cfg: OptConfigType = None,
                norm_cfg: ConfigType = dict(type='BN'),
                act_cfg: ConfigType = dict(type='ReLU')) -> ConvModule:
    """Pre-activation ``norm-act-conv`` (DSOD's ``bn_relu_conv``), no bias.

    Args:
        in_channels (int): Input channels (also the norm's width).
        out_channels (int): Output channels.
        kernel_size (int): 1 or 3; padding keeps the size at stride 1.
        stride (int): Conv stride. Defaults to 1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='ReLU')``.

    Returns:
        ConvModule: The block.
    """
    return ConvModule(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=False,
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg,
        order=('norm', 'act', 'conv'))


def ceil_max_pool() -> nn.MaxPool2d:
    """DSOD's 2x2/2 max-pool; Caffe pooling rounds up (75 -> 38)."""
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


@MODELS.register_module()
class DSODDenseNet(StagedBackbone):
    """DenseNet backbone of DSOD300 (stride-16 output, no pooling at the end).

    ``stem``: 3x3/2 conv 64, 3x3 conv 64, 3x3 conv 128 (conv-BN-ReLU) and a
    2x2/2 max-pool (stride 4). ``stage1`` .. ``stage4`` are each
    ``[2x2/2 max-pool] -> dense block -> BN-ReLU-1x1 transition`` with the
    pool only before stages 2 and 3, so the outputs have strides 4, 8, 16,
    16. Stage 2's output is DSOD's "First" prediction source (38x38, 800
    channels for DSOD300); stage 4's 1x1 transition narrows to
    ``last_transition_channels`` (256) for DSOD's "Second" source. Dense
    layers are pre-activation ``BN-ReLU-1x1 (bn_size*k) - BN-ReLU-3x3 (k)``,
    so the stage outputs are raw conv outputs (not normalised).

    Args:
        arch (str): ``'DSOD300'``, ``'DSOD300-lite'`` or ``'DenseNet-67'``
            (a key of :attr:`arch_settings`). Defaults to ``'DSOD300'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output (0..3 = strides 4, 8,
            16, 16). Defaults to (1, 3), DSOD's two backbone sources.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem and the first ``k`` stages. Defaults to -1.
        norm_cfg (dict): Norm layer config. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep BN layers in eval mode (frozen statistics)
            while training. Defaults to False.
        with_cp (bool): Memory-efficient dense layers (the concat and the
            first BN-ReLU-conv are recomputed in backward). Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init for convs and constant 1 for norms
            (DSOD's Caffe code used Xavier).

    Example:
        >>> import torch
        >>> from vovdet.models import DSODDenseNet
        >>> model = DSODDenseNet(arch='DSOD300', out_indices=(0, 1, 2, 3))
        >>> for out in model.eval()(torch.rand(1, 3, 300, 300)):
        ...     print(tuple(out.shape))
        (1, 416, 75, 75)
        (1, 800, 38, 38)
        (1, 1184, 19, 19)
        (1, 256, 19, 19)
    """
    arch_settings = arch_settings

    def __init__(self,
                 arch: str = 'DSOD300',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (1, 3),
                 frozen_stages: int = -1,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = [
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(
                         type='Constant',
                         val=1,
                         layer=['_BatchNorm', 'GroupNorm'])
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        setting = self._arch_setting(arch, 'DSODDenseNet')
        num_stages = 4
        out_indices = self._set_stage_args(out_indices, frozen_stages,
                                           num_stages, norm_eval, with_cp)

        stem_channels = setting['stem_channels']
        self.stem = nn.Sequential()
        channels = in_channels
        for i, out in enumerate(stem_channels):
            self.stem.add_module(
                f'conv{i + 1}',
                ConvModule(channels, out, 3, stride=2 if i == 0 else 1,
                           padding=1, bias=False, norm_cfg=norm_cfg))
            channels = out
        self.stem.add_module('pool', ceil_max_pool())

        self.stage_names = []
        stage_channels = []
        num_transitions = len(setting['blocks_per_stage'])
        for i, num_layers in enumerate(setting['blocks_per_stage']):
            stage = nn.Sequential()
            if _POOL_BEFORE_STAGE[i]:
                stage.add_module('pool', ceil_max_pool())
            block = DenseBlock(num_layers, channels, setting['growth_rate'],
                               setting['bn_size'], norm_cfg, with_cp=with_cp)
            stage.add_module('denseblock', block)
            channels = block.out_channels
            if i == num_transitions - 1:
                out = setting['last_transition_channels']
            else:
                out = channels
            stage.add_module(
                'transition',
                preact_conv(channels, out, 1, norm_cfg=norm_cfg))
            channels = out
            name = f'stage{i + 1}'
            self.add_module(name, stage)
            self.stage_names.append(name)
            stage_channels.append(channels)
        self.out_channels = tuple(stage_channels[i] for i in out_indices)
        self._freeze_stages()
