"""The ResNet bottleneck with a projection shortcut, as RefineDet uses it.

The official RefineDet (ResNet-101) and VoVNet-RefineDet Caffe models build
two kinds of extra blocks with SSD's ``ResBody(..., use_branch1=True)``
(``model_libs.py``): the stride-2 block that adds the fourth pyramid level
(``res6``: 128-128-512) and, in VoVNet-RefineDet, the per-head "inter"
blocks (256-256-1024). ``ResBody`` is exactly mmdet's ``Bottleneck`` in the
Caffe style (the stride sits on the first 1x1 conv, ``branch2a``) with a
strided 1x1 conv + norm projection (``branch1``), so it is built from
mmdet's class rather than rewritten.
"""
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones.resnet import Bottleneck
from mmdet.utils import ConfigType, OptConfigType


def res_bottleneck(in_channels: int,
                   mid_channels: int,
                   stride: int = 1,
                   conv_cfg: OptConfigType = None,
                   norm_cfg: ConfigType = dict(type='BN')) -> Bottleneck:
    """Build ``1x1 (stride) -> 3x3 -> 1x1 (x4)`` + projection shortcut.

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Channels of the 1x1 and 3x3 convs; the output has
            ``4 * mid_channels`` (ResNet's expansion).
        stride (int): Stride of the first 1x1 conv and of the shortcut.
            Defaults to 1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config; every conv is followed by one.
            Defaults to ``dict(type='BN')``.

    Returns:
        Bottleneck: mmdet's block; ``block.planes * block.expansion`` is the
        number of output channels.
    """
    if norm_cfg is None:
        raise ValueError('res_bottleneck needs a norm layer after every conv '
                         "(Caffe's ResBody); pass norm_cfg=dict(type='BN') "
                         "or dict(type='GN', num_groups=32)")
    out_channels = mid_channels * Bottleneck.expansion
    shortcut = nn.Sequential(
        build_conv_layer(
            conv_cfg, in_channels, out_channels, 1, stride=stride,
            bias=False),
        build_norm_layer(norm_cfg, out_channels)[1])
    return Bottleneck(
        in_channels,
        mid_channels,
        stride=stride,
        downsample=shortcut,
        style='caffe',
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg)
