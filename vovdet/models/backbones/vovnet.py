"""VoVNet (V1) and VoVNetV2 backbones.

References:
    - Lee et al., "An Energy and GPU-Computation Efficient Backbone Network
      for Real-Time Object Detection", CVPRW 2019 (Table 1).
    - Lee & Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation",
      CVPR 2020 (VoVNetV2: identity mapping, eSE, depthwise variants).
"""
from typing import Optional, Sequence

import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers.osa import OSAStage, osa_conv3x3
from .base import StagedBackbone

# One row per variant; the variants differ only in data.
#   stem_channels: the three stem convs (3x3/2, 3x3, 3x3).
#   stage_mid_channels: channels of every 3x3 layer in an OSA module.
#   stage_out_channels: channels after the 1x1 aggregation.
#   layers_per_block / blocks_per_stage: OSA module depth and count.
#   residual: identity shortcut on the 2nd+ module of a stage (V2).
#   depthwise: depthwise-separable 3x3s in stem conv2/3 and OSA layers.
#   ese: effective Squeeze-Excitation on the aggregated output (V2).
_V39_MID = (128, 160, 192, 224)
_V39_OUT = (256, 512, 768, 1024)
_SLIM_MID = (64, 80, 96, 112)
arch_settings = {
    'V-27-slim': dict(stem_channels=(64, 64, 128),
                      stage_mid_channels=_SLIM_MID,
                      stage_out_channels=(128, 256, 384, 512),
                      layers_per_block=5, blocks_per_stage=(1, 1, 1, 1),
                      residual=False, depthwise=False, ese=False),
    'V-39': dict(stem_channels=(64, 64, 128), stage_mid_channels=_V39_MID,
                 stage_out_channels=_V39_OUT, layers_per_block=5,
                 blocks_per_stage=(1, 1, 2, 2),
                 residual=False, depthwise=False, ese=False),
    'V-57': dict(stem_channels=(64, 64, 128), stage_mid_channels=_V39_MID,
                 stage_out_channels=_V39_OUT, layers_per_block=5,
                 blocks_per_stage=(1, 1, 4, 3),
                 residual=False, depthwise=False, ese=False),
    'V2-19-slim-dw': dict(stem_channels=(64, 64, 64),
                          stage_mid_channels=_SLIM_MID,
                          stage_out_channels=(112, 256, 384, 512),
                          layers_per_block=3, blocks_per_stage=(1, 1, 1, 1),
                          residual=True, depthwise=True, ese=True),
    'V2-19-dw': dict(stem_channels=(64, 64, 64), stage_mid_channels=_V39_MID,
                     stage_out_channels=_V39_OUT, layers_per_block=3,
                     blocks_per_stage=(1, 1, 1, 1),
                     residual=True, depthwise=True, ese=True),
    'V2-19-slim': dict(stem_channels=(64, 64, 128),
                       stage_mid_channels=_SLIM_MID,
                       stage_out_channels=(112, 256, 384, 512),
                       layers_per_block=3, blocks_per_stage=(1, 1, 1, 1),
                       residual=True, depthwise=False, ese=True),
    'V2-19': dict(stem_channels=(64, 64, 128), stage_mid_channels=_V39_MID,
                  stage_out_channels=_V39_OUT, layers_per_block=3,
                  blocks_per_stage=(1, 1, 1, 1),
                  residual=True, depthwise=False, ese=True),
    'V2-39': dict(stem_channels=(64, 64, 128), stage_mid_channels=_V39_MID,
                  stage_out_channels=_V39_OUT, layers_per_block=5,
                  blocks_per_stage=(1, 1, 2, 2),
                  residual=True, depthwise=False, ese=True),
    'V2-57': dict(stem_channels=(64, 64, 128), stage_mid_channels=_V39_MID,
                  stage_out_channels=_V39_OUT, layers_per_block=5,
                  blocks_per_stage=(1, 1, 4, 3),
                  residual=True, depthwise=False, ese=True),
    'V2-99': dict(stem_channels=(64, 64, 128), stage_mid_channels=_V39_MID,
                  stage_out_channels=_V39_OUT, layers_per_block=5,
                  blocks_per_stage=(1, 3, 9, 3),
                  residual=True, depthwise=False, ese=True),
}


@MODELS.register_module()
class VoVNet(StagedBackbone):
    """VoVNet / VoVNetV2 backbone.

    The four OSA stages (the paper's stages 2-5, strides 4/8/16/32) are named
    ``stage1`` .. ``stage4`` and indexed 0..3 by ``out_indices``.

    Args:
        arch (str): One of the keys of :attr:`arch_settings`: ``'V-27-slim'``,
            ``'V-39'``, ``'V-57'`` (VoVNet V1: no residual, no eSE) or
            ``'V2-19-slim-dw'``, ``'V2-19-dw'``, ``'V2-19-slim'``, ``'V2-19'``,
            ``'V2-39'``, ``'V2-57'``, ``'V2-99'`` (VoVNetV2). Defaults to
            ``'V-39'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output (0..3 = strides 4, 8,
            16, 32). Defaults to (0, 1, 2, 3).
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem and the first ``k`` stages. Defaults to -1.
        stem_stride_mode (str): ``'pytorch'``: the third stem conv has stride
            2 and stages 2-4 start with a 3x3/2 max-pool (the public PyTorch
            ports and timm). ``'paper'``: the third stem conv has stride 1 and
            every stage starts with a 3x3/2 max-pool (the paper's Caffe
            layout, behind its FLOPs). Same parameters, same output strides.
            Defaults to ``'pytorch'``.
        residual (bool, optional): Identity shortcut on the 2nd and later
            OSA modules of every stage. None takes the arch's own setting
            (True for V2, False for V1). ``True`` on V-39/V-57 gives the
            layout of the official Table 5 code (VoVNet-Detectron
            ``maskrcnn_benchmark/modeling/backbone/vovnet.py``: ``_OSA_stage``
            builds modules 2..n with ``identity=True``); the shortcut adds
            no parameters. Defaults to None.
        ese_placement (str): For V2 archs, ``'all'`` puts eSE in every OSA
            module (official CenterMask/vovnet-detectron2 code) and
            ``'last'`` only in the last module of a stage (timm's
            ``ese_vovnet*b``). Ignored for V1 archs. Defaults to ``'all'``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config (BN, SyncBN and GN work).
            Defaults to ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep BN layers in eval mode (frozen statistics)
            while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of every OSA module, trading
            compute for memory. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init for convs and constant 1 for norms.

    Example:
        >>> import torch
        >>> from vovdet.models import VoVNet
        >>> model = VoVNet(arch='V-39').eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 256, 16, 16)
        (1, 512, 8, 8)
        (1, 768, 4, 4)
        (1, 1024, 2, 2)
    """
    arch_settings = arch_settings

    def __init__(self,
                 arch: str = 'V-39',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 stem_stride_mode: str = 'pytorch',
                 residual: Optional[bool] = None,
                 ese_placement: str = 'all',
                 conv_cfg: OptConfigType = None,
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
        setting = self._arch_setting(arch, 'VoVNet')
        if stem_stride_mode not in ('pytorch', 'paper'):
            raise ValueError(f"stem_stride_mode must be 'pytorch' or "
                             f"'paper', got '{stem_stride_mode}'")
        if ese_placement not in ('all', 'last'):
            raise ValueError(f"ese_placement must be 'all' or 'last', got "
                             f"'{ese_placement}'")
        num_stages = 4
        out_indices = self._set_stage_args(out_indices, frozen_stages,
                                           num_stages, norm_eval, with_cp)
        self.stem_stride_mode = stem_stride_mode
        self.residual = setting['residual'] if residual is None else residual

        conv_kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        stem_channels = setting['stem_channels']
        depthwise = setting['depthwise']
        stem_last_stride = 2 if stem_stride_mode == 'pytorch' else 1
        self.stem = nn.Sequential(
            osa_conv3x3(in_channels, stem_channels[0], stride=2,
                        **conv_kwargs),
            osa_conv3x3(stem_channels[0], stem_channels[1],
                        depthwise=depthwise, **conv_kwargs),
            osa_conv3x3(stem_channels[1], stem_channels[2],
                        stride=stem_last_stride, depthwise=depthwise,
                        **conv_kwargs))

        ese = 'none'
        if setting['ese']:
            ese = ese_placement
        self.stage_names = []
        stage_in = stem_channels[2]
        for i in range(num_stages):
            stage = OSAStage(
                stage_in,
                setting['stage_mid_channels'][i],
                setting['stage_out_channels'][i],
                num_blocks=setting['blocks_per_stage'][i],
                num_layers=setting['layers_per_block'],
                downsample=i > 0 or stem_stride_mode == 'paper',
                residual=self.residual,
                depthwise=depthwise,
                ese=ese,
                with_cp=with_cp,
                **conv_kwargs)
            name = f'stage{i + 1}'
            self.add_module(name, stage)
            self.stage_names.append(name)
            stage_in = setting['stage_out_channels'][i]
        self.out_channels = tuple(setting['stage_out_channels'][i]
                                  for i in out_indices)
        self._freeze_stages()
