"""DenseNet backbone in the torchvision layout.

Reference:
    Huang et al., "Densely Connected Convolutional Networks", CVPR 2017
    (Table 1: DenseNet-121/169/201/161 with bottleneck + compression 0.5).

Each dense layer is pre-activation ``BN-ReLU-1x1 conv (bn_size * growth) -
BN-ReLU-3x3 conv (growth)`` and its output is concatenated to its input; a
transition is ``BN-ReLU-1x1 conv (half the channels) - 2x2 avg-pool``.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule

from ..layers.checkpoint import checkpoint_keep_running_stats
from .base import StagedBackbone

# One row per variant (paper Table 1; torchvision's densenet121/161/201).
#   growth_rate: channels each dense layer adds.
#   blocks_per_stage: dense layers in dense blocks 1..4.
#   stem_channels: output of the 7x7/2 stem conv ("num_init_features").
#   bn_size: bottleneck width = bn_size * growth_rate.
arch_settings = {
    '121': dict(growth_rate=32, blocks_per_stage=(6, 12, 24, 16),
                stem_channels=64, bn_size=4),
    '161': dict(growth_rate=48, blocks_per_stage=(6, 12, 36, 24),
                stem_channels=96, bn_size=4),
    '201': dict(growth_rate=32, blocks_per_stage=(6, 12, 48, 32),
                stem_channels=64, bn_size=4),
}


class DenseLayer(BaseModule):
    """Bottleneck dense layer ``BN-ReLU-conv1x1-BN-ReLU-conv3x3``.

    Takes the list of all previous feature maps and returns only its new
    ``growth_rate`` channels.

    Args:
        in_channels (int): Total channels of the input feature maps.
        growth_rate (int): Output channels.
        bn_size (int): Bottleneck width multiplier.
        norm_cfg (dict): Norm layer config.
        with_cp (bool): Recompute the concat + first BN-ReLU-conv in the
            backward pass instead of storing them (the "memory-efficient"
            DenseNet of Pleiss et al. 2017); the recomputation leaves the BN
            running statistics alone. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 growth_rate: int,
                 bn_size: int,
                 norm_cfg: ConfigType,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        mid_channels = bn_size * growth_rate
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid_channels, growth_rate, 3, padding=1,
                               bias=False)
        self.with_cp = with_cp

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        """Concat the inputs and apply ``BN-ReLU-conv1x1``.

        The concatenated tensor is the layer's largest activation; with
        ``with_cp`` it is recomputed rather than stored.
        """
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """Forward function.

        Args:
            features (list[Tensor]): All previous feature maps of the block.

        Returns:
            Tensor: The ``growth_rate`` new channels.
        """
        if self.with_cp and any(f.requires_grad for f in features):
            out = checkpoint_keep_running_stats(
                self.bottleneck, *features, modules=(self.norm1, ))
        else:
            out = self.bottleneck(*features)
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; returns the concat of input and outputs.

    Args:
        num_layers (int): Number of dense layers.
        in_channels (int): Input channels.
        growth_rate (int): Channels each layer adds.
        bn_size (int): Bottleneck width multiplier.
        norm_cfg (dict): Norm layer config.
        with_cp (bool): Memory-efficient layers. Defaults to False.
    """

    def __init__(self,
                 num_layers: int,
                 in_channels: int,
                 growth_rate: int,
                 bn_size: int,
                 norm_cfg: ConfigType,
                 with_cp: bool = False) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f'denselayer{i + 1}',
                DenseLayer(in_channels + i * growth_rate, growth_rate,
                           bn_size, norm_cfg, with_cp=with_cp))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward function."""
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """``BN-ReLU-1x1 conv-2x2/2 avg-pool`` between dense blocks.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        norm_cfg (dict): Norm layer config.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        self.add_module('norm', build_norm_layer(norm_cfg, in_channels)[1])
        self.add_module('relu', nn.ReLU(inplace=True))
        self.add_module(
            'conv', nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.add_module('pool', nn.AvgPool2d(2, stride=2))


@MODELS.register_module()
class DenseNet(StagedBackbone):
    """DenseNet-121/161/201 backbone.

    Stem: 7x7/2 conv-BN-ReLU and 3x3/2 max-pool (stride 4). ``stage1`` is
    dense block 1 (stride 4); ``stage2`` .. ``stage4`` each start with the
    transition that halves channels and resolution, followed by dense blocks
    2..4 (strides 8, 16, 32); ``stage4`` ends with the final BN. So every
    stage output is a dense block's full concatenation, e.g. 256, 512, 1024,
    1024 channels for DenseNet-121. Stage outputs 1-3 are pre-activation
    (the next transition's BN-ReLU normalises them), as in torchvision's
    ``features`` taps.

    With ``out_type='transition'`` the outputs at strides 4, 8 and 16 are
    instead the 1x1 convs of the *next* transition, before its pooling (half
    the channels, e.g. 128, 256, 512 for DenseNet-121); stage 4 still outputs
    its block. These are the taps of the VoVNet paper's DenseNet-201
    RefineDet (256/896/1920 channels), whose 56.13M parameters only this
    layout reproduces (docs/refinedet.md). The modules and their weights are
    the same in both layouts.

    Args:
        arch (str): ``'121'``, ``'161'`` or ``'201'``. Defaults to ``'121'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output (0..3 = strides 4, 8,
            16, 32). Defaults to (0, 1, 2, 3).
        out_type (str): ``'block'`` (a dense block's concatenation) or
            ``'transition'`` (the next transition's 1x1 conv, before
            pooling) for stages 0-2. Defaults to ``'block'``.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem and the first ``k`` stages. Defaults to -1.
        norm_cfg (dict): Norm layer config. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep BN layers in eval mode (frozen statistics)
            while training. Defaults to False.
        with_cp (bool): Memory-efficient dense layers: the concat and the
            first BN-ReLU-conv of every layer are recomputed in backward.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init for convs and constant 1 for norms.

    Example:
        >>> import torch
        >>> from vovdet.models import DenseNet
        >>> model = DenseNet(arch='121').eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 256, 16, 16)
        (1, 512, 8, 8)
        (1, 1024, 4, 4)
        (1, 1024, 2, 2)
    """
    arch_settings = arch_settings
    out_types = ('block', 'transition')

    def __init__(self,
                 arch: str = '121',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_type: str = 'block',
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
        setting = self._arch_setting(arch, 'DenseNet')
        if out_type not in self.out_types:
            raise ValueError(f"unknown out_type '{out_type}'; choose one of "
                             f"{', '.join(self.out_types)}")
        num_stages = 4
        out_indices = self._set_stage_args(out_indices, frozen_stages,
                                           num_stages, norm_eval, with_cp)
        self.out_type = out_type

        channels = setting['stem_channels']
        self.stem = nn.Sequential()
        self.stem.add_module(
            'conv', nn.Conv2d(in_channels, channels, 7, stride=2, padding=3,
                              bias=False))
        self.stem.add_module('norm', build_norm_layer(norm_cfg, channels)[1])
        self.stem.add_module('relu', nn.ReLU(inplace=True))
        self.stem.add_module('pool', nn.MaxPool2d(3, stride=2, padding=1))

        self.stage_names = []
        stage_channels = []
        for i, num_layers in enumerate(setting['blocks_per_stage']):
            stage = nn.Sequential()
            if i > 0:
                stage.add_module('transition',
                                 Transition(channels, channels // 2, norm_cfg))
                channels //= 2
            block = DenseBlock(num_layers, channels, setting['growth_rate'],
                               setting['bn_size'], norm_cfg, with_cp=with_cp)
            stage.add_module('denseblock', block)
            channels = block.out_channels
            if i == num_stages - 1:
                stage.add_module('norm',
                                 build_norm_layer(norm_cfg, channels)[1])
            name = f'stage{i + 1}'
            self.add_module(name, stage)
            self.stage_names.append(name)
            stage_channels.append(channels)
        if out_type == 'transition':
            # a transition halves the channels of the block before it
            stage_channels[:-1] = [c // 2 for c in stage_channels[:-1]]
        self.out_channels = tuple(stage_channels[i] for i in out_indices)
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward function.

        Args:
            x (Tensor): Images of shape (N, C, H, W).

        Returns:
            tuple[Tensor]: Feature maps of the stages in ``out_indices``,
            dense-block or transition taps as ``out_type`` says.
        """
        if self.out_type == 'block':
            return super().forward(x)
        x = self.stem(x)
        outs = []
        last = len(self.stage_names) - 1
        for i, name in enumerate(self.stage_names):
            for child_name, child in getattr(self, name).named_children():
                if child_name == 'transition':
                    # tap the previous stage at the conv, before pooling
                    x = child.conv(child.relu(child.norm(x)))
                    if i - 1 in self.out_indices:
                        outs.append(x)
                    x = child.pool(x)
                else:
                    x = child(x)
            if i == last and i in self.out_indices:
                outs.append(x)
        return tuple(outs)
