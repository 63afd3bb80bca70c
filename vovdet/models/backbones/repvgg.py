"""RepVGG backbone with structural re-parameterisation.

Reference:
    Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021
    (Sec. 3.3 re-parameterisation, Table 2 widths/depths, Table 4 params).

The block and its fusion math (:class:`RepVGGBlock`,
:func:`repvgg_fused_kernel_bias`, :func:`fuse_conv_norm`) live in
:mod:`vovdet.models.layers.repvgg_block`, shared with the re-parameterisable
OSA-FPN necks; they are imported here under their old names.
"""
from typing import Sequence

import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from ..layers.repvgg_block import (RepVGGBlock, fuse_conv_norm,
                                   fuse_repvgg_blocks, identity_kernel,
                                   repvgg_fused_kernel_bias)
from .base import StagedBackbone

__all__ = [
    'RepVGG', 'RepVGGBlock', 'arch_settings', 'fuse_conv_norm',
    'identity_kernel', 'repvgg_fused_kernel_bias'
]

# One row per variant (paper Table 2 / official ``repvgg.py``).
#   widen_factors: (a, b); stage widths are min(64, 64a), 64a, 128a, 256a,
#       512b for the stem and stage1..stage4.
#   blocks_per_stage: blocks of stage1..stage4 (the stem is one block).
#   groups: groups of the 3x3/1x1 convs of the blocks at the global layer
#       indices in ``GROUPWISE_LAYERS`` (the "g2"/"g4" variants).
_A_BLOCKS = (2, 4, 14, 1)
_B_BLOCKS = (4, 6, 16, 1)
arch_settings = {
    'A0': dict(widen_factors=(0.75, 2.5), blocks_per_stage=_A_BLOCKS,
               groups=1),
    'A1': dict(widen_factors=(1, 2.5), blocks_per_stage=_A_BLOCKS, groups=1),
    'A2': dict(widen_factors=(1.5, 2.75), blocks_per_stage=_A_BLOCKS,
               groups=1),
    'B0': dict(widen_factors=(1, 2.5), blocks_per_stage=_B_BLOCKS, groups=1),
    'B1': dict(widen_factors=(2, 4), blocks_per_stage=_B_BLOCKS, groups=1),
    'B1g2': dict(widen_factors=(2, 4), blocks_per_stage=_B_BLOCKS, groups=2),
    'B1g4': dict(widen_factors=(2, 4), blocks_per_stage=_B_BLOCKS, groups=4),
    'B2': dict(widen_factors=(2.5, 5), blocks_per_stage=_B_BLOCKS, groups=1),
    'B2g4': dict(widen_factors=(2.5, 5), blocks_per_stage=_B_BLOCKS,
                 groups=4),
    'B3': dict(widen_factors=(3, 5), blocks_per_stage=_B_BLOCKS, groups=1),
    'B3g4': dict(widen_factors=(3, 5), blocks_per_stage=_B_BLOCKS, groups=4),
}

# Global block indices that use grouped convs in the g2/g4 variants: the stem
# block is index 0 and stage1's first block is index 1 (official code's
# ``optional_groupwise_layers``).
GROUPWISE_LAYERS = tuple(range(2, 27, 2))


@MODELS.register_module()
class RepVGG(StagedBackbone):
    """RepVGG backbone.

    A stride-2 stem block (the paper's stage 0) followed by four stages
    ``stage1`` .. ``stage4`` (strides 4, 8, 16, 32), each starting with a
    stride-2 block. ``out_indices`` 0..3 select stage1..stage4.

    Args:
        arch (str): One of ``'A0'``, ``'A1'``, ``'A2'``, ``'B0'``, ``'B1'``,
            ``'B1g2'``, ``'B1g4'``, ``'B2'``, ``'B2g4'``, ``'B3'``,
            ``'B3g4'``. Defaults to ``'A0'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output (0..3 = strides 4, 8,
            16, 32). Defaults to (0, 1, 2, 3).
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem and the first ``k`` stages. Defaults to -1.
        norm_cfg (dict): Norm layer config of the training branches. Only
            BN/SyncBN can be re-parameterised. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep BN layers in eval mode (frozen statistics)
            while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of every block.
            Defaults to False.
        deploy (bool): Build every block as one 3x3 conv with bias, the form
            :meth:`switch_to_deploy` produces (to load re-parameterised
            checkpoints). Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init for convs and constant 1 for norms.

    Example:
        >>> import torch
        >>> from vovdet.models import RepVGG
        >>> model = RepVGG(arch='A0').eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 48, 16, 16)
        (1, 96, 8, 8)
        (1, 192, 4, 4)
        (1, 1280, 2, 2)
        >>> model.switch_to_deploy()  # same outputs, one conv per block
    """
    arch_settings = arch_settings

    def __init__(self,
                 arch: str = 'A0',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: OptMultiConfig = [
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(
                         type='Constant',
                         val=1,
                         layer=['_BatchNorm', 'GroupNorm'])
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        setting = self._arch_setting(arch, 'RepVGG')
        num_stages = 4
        out_indices = self._set_stage_args(out_indices, frozen_stages,
                                           num_stages, norm_eval, with_cp)
        self.deploy = deploy

        a, b = setting['widen_factors']
        stage_channels = (int(64 * a), int(128 * a), int(256 * a),
                          int(512 * b))
        block_kwargs = dict(norm_cfg=norm_cfg, deploy=deploy, with_cp=with_cp)
        stem_channels = min(64, int(64 * a))
        self.stem = RepVGGBlock(in_channels, stem_channels, stride=2,
                                **block_kwargs)
        layer_index = 1
        block_in = stem_channels
        self.stage_names = []
        for i, (channels, num_blocks) in enumerate(
                zip(stage_channels, setting['blocks_per_stage'])):
            blocks = []
            for j in range(num_blocks):
                groups = (setting['groups']
                          if layer_index in GROUPWISE_LAYERS else 1)
                blocks.append(
                    RepVGGBlock(block_in, channels, stride=2 if j == 0 else 1,
                                groups=groups, **block_kwargs))
                block_in = channels
                layer_index += 1
            name = f'stage{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        self.out_channels = tuple(stage_channels[i] for i in out_indices)
        self._freeze_stages()

    def switch_to_deploy(self) -> None:
        """Re-parameterise every block into a single 3x3 conv.

        All fused kernels are computed before any block changes, so a norm
        that cannot be folded raises without leaving the model half
        converted. Idempotent. Call it on a model whose BN statistics are
        final; the deployed model equals the original in ``eval()`` mode.
        """
        fuse_repvgg_blocks(self)
        self.deploy = True
        self._freeze_stages()
