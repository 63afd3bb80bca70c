"""One-Shot Aggregation (OSA) building blocks.

The OSA module (VoVNet, Lee et al. 2019, Sec. 3.2) chains ``num_layers``
3x3 convolutions that all keep ``mid_channels`` channels (c_in = c_out, the
memory-access-cost lower bound of Eq. 1), concatenates the module input and
every layer output *once*, and aggregates them with a single 1x1 conv.
VoVNetV2 (CenterMask, Lee & Park 2020) adds an identity shortcut and the
effective Squeeze-Excitation (eSE) attention on the aggregated output.
YOLOv7's ELAN (Wang et al. 2022, Sec. 3.1) is an OSA module whose layers read
only part of its input (CSPNet's partial split): ``bypass_channels``.

This file is shared by the VoVNet backbone, the OSA-FPN necks and the
VoVNet variants of DSOD/RefineDet.
"""
from typing import List

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmdet.models.layers import ChannelAttention
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule

from .checkpoint import checkpoint_keep_running_stats
from .repvgg_block import RepVGGBlock


def osa_conv3x3(in_channels: int,
                out_channels: int,
                stride: int = 1,
                depthwise: bool = False,
                repvgg: bool = False,
                deploy: bool = False,
                conv_cfg: OptConfigType = None,
                norm_cfg: ConfigType = dict(type='BN'),
                act_cfg: ConfigType = dict(type='ReLU')) -> nn.Module:
    """Build the 3x3 conv used by OSA layers and the VoVNet stem.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the 3x3 convolution. Defaults to 1.
        depthwise (bool): If True, build the VoVNetV2 "DW" form: a depthwise
            3x3 conv without norm or activation, then a pointwise
            1x1 conv-norm-act. Defaults to False (a plain 3x3 conv-norm-act).
        repvgg (bool): If True, build a :class:`RepVGGBlock` (3x3, 1x1 and,
            when the shape allows, identity branches that fold into one 3x3
            conv at deploy time). Not with ``depthwise``. Defaults to False.
        deploy (bool): Only with ``repvgg``: build the folded form directly.
            Defaults to False.
        conv_cfg (dict, optional): Conv layer config (not with ``repvgg``).
            Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='ReLU')``.

    Returns:
        nn.Module: The conv block.
    """
    if repvgg:
        if depthwise or conv_cfg is not None:
            raise ValueError(
                'a RepVGG layer (repvgg=True) is a dense 3x3 of plain convs: '
                'it takes neither depthwise=True nor a conv_cfg; drop one')
        return RepVGGBlock(
            in_channels,
            out_channels,
            stride=stride,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            deploy=deploy)
    if deploy:
        raise ValueError('deploy=True builds the folded form of RepVGG '
                         'layers; it needs repvgg=True')
    if depthwise:
        return DepthwiseSeparableConvModule(
            in_channels,
            out_channels,
            3,
            stride=stride,
            padding=1,
            bias=False,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            dw_norm_cfg=None,
            dw_act_cfg=None)
    return ConvModule(
        in_channels,
        out_channels,
        3,
        stride=stride,
        padding=1,
        bias=False,
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg)


class OSAModule(BaseModule):
    """One-Shot Aggregation module.

    ``x -> [bypass split] -> [reduce] -> conv_1 -> ... -> conv_n``;
    ``concat(x, conv_1..conv_n)`` -> 1x1 conv -> [eSE] -> [+ x].

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Channels of every 3x3 layer.
        out_channels (int): Channels after the 1x1 aggregation.
        num_layers (int): Number of 3x3 layers (5 in VoVNet-39/57).
        bypass_channels (int): The first ``bypass_channels`` input channels
            skip the 3x3 layers and reach only the concatenation; the layers
            read the other ``in_channels - bypass_channels`` (CSPNet's
            partial split, as in YOLOv7's ELAN). Defaults to 0 (the layers
            read the whole input, VoVNet's module).
        depthwise (bool): Use depthwise-separable 3x3 layers. When
            ``in_channels != mid_channels`` a 1x1 conv-norm-act reduction runs
            first (the concat still takes the original input).
            Defaults to False.
        depthwise_reduction (bool): Only with ``depthwise``: when
            ``in_channels != mid_channels``, reduce the input with that 1x1
            conv-norm-act before the first layer (VoVNetV2). If False, the
            first layer's pointwise conv maps ``in_channels`` to
            ``mid_channels`` itself, so the module has no 1x1 bottleneck
            (the OSA-FPN necks). Defaults to True.
        repvgg (bool): Make the 3x3 layers RepVGG blocks, which
            :func:`~vovdet.models.layers.fuse_repvgg_blocks` folds into one
            conv each. Defaults to False.
        deploy (bool): Build those layers folded (with ``repvgg``).
            Defaults to False.
        use_ese (bool): Apply eSE attention to the aggregated output.
            Defaults to False.
        identity (bool): Add the input to the output; requires
            ``in_channels == out_channels``. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='ReLU')``.
        with_cp (bool): Use gradient checkpointing for this module; the
            recomputation leaves BN running statistics alone.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 num_layers: int,
                 bypass_channels: int = 0,
                 depthwise: bool = False,
                 depthwise_reduction: bool = True,
                 repvgg: bool = False,
                 deploy: bool = False,
                 use_ese: bool = False,
                 identity: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if identity and in_channels != out_channels:
            raise ValueError(
                f'identity shortcut needs in_channels == out_channels, got '
                f'{in_channels} and {out_channels}')
        if not 0 <= bypass_channels < in_channels:
            raise ValueError(
                f'bypass_channels must be in [0, in_channels), got '
                f'{bypass_channels} of {in_channels}')
        self.identity = identity
        self.with_cp = with_cp
        self.bypass_channels = bypass_channels
        conv_kwargs = dict(
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        layer_in = in_channels - bypass_channels
        self.reduction = None
        if depthwise and depthwise_reduction and layer_in != mid_channels:
            self.reduction = ConvModule(
                layer_in, mid_channels, 1, bias=False, **conv_kwargs)
            layer_in = mid_channels
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(
                osa_conv3x3(
                    layer_in, mid_channels, depthwise=depthwise,
                    repvgg=repvgg, deploy=deploy, **conv_kwargs))
            layer_in = mid_channels
        self.aggregation = ConvModule(
            in_channels + num_layers * mid_channels,
            out_channels,
            1,
            bias=False,
            **conv_kwargs)
        self.ese = ChannelAttention(out_channels) if use_ese else None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = [x]
        y = x[:, self.bypass_channels:] if self.bypass_channels else x
        if self.reduction is not None:
            y = self.reduction(y)
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        out = self.aggregation(torch.cat(outputs, dim=1))
        if self.ese is not None:
            out = self.ese(out)
        if self.identity:
            out = out + x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward function."""
        if self.with_cp and x.requires_grad:
            return checkpoint_keep_running_stats(
                self._forward, x, modules=(self, ))
        return self._forward(x)


class OSAStage(nn.Sequential):
    """A VoVNet stage: an optional 3x3/2 max-pool and ``num_blocks`` modules.

    The first module maps ``in_channels`` to ``out_channels``; the following
    ones map ``out_channels`` to itself and, when ``residual`` is set, carry
    the identity shortcut (VoVNetV2).

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Channels of the 3x3 layers.
        out_channels (int): Output channels of every module.
        num_blocks (int): Number of OSA modules.
        num_layers (int): 3x3 layers per module.
        downsample (bool): Start with ``MaxPool2d(3, 2, ceil_mode=True)``.
        residual (bool): Identity shortcut on the 2nd and later modules.
        depthwise (bool): Depthwise-separable 3x3 layers.
        ese (str): Which modules get eSE: ``'none'``, ``'all'`` or ``'last'``.
        **kwargs: ``conv_cfg``, ``norm_cfg``, ``act_cfg``, ``with_cp`` for
            :class:`OSAModule`.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 num_blocks: int,
                 num_layers: int,
                 downsample: bool,
                 residual: bool = False,
                 depthwise: bool = False,
                 ese: str = 'none',
                 **kwargs) -> None:
        layers = []
        if downsample:
            layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
        for i in range(num_blocks):
            use_ese = ese == 'all' or (ese == 'last' and i == num_blocks - 1)
            layers.append(
                OSAModule(
                    in_channels if i == 0 else out_channels,
                    mid_channels,
                    out_channels,
                    num_layers,
                    depthwise=depthwise,
                    use_ese=use_ese,
                    identity=residual and i > 0,
                    **kwargs))
        super().__init__(*layers)
