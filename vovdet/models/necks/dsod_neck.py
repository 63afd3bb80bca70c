"""DSOD's dense prediction structure ("learning half, reusing half").

Reference:
    Shen et al., "DSOD: Learning Deeply Supervised Object Detectors from
    Scratch", ICCV 2017 (Sec. 3.1, Fig. 1 right); official Caffe code
    ``szq0214/DSOD`` (``DSOD300_V3_Body``: ``f_first``, ``add_bl_layer2``).

Every prediction scale after the first concatenates two halves: a
*learned* half computed from the previous scale and a *reused* half, the
previous scale max-pooled by 2 and squeezed by a 1x1 conv. All convs are
pre-activation BN-ReLU-conv, as in the backbone.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule

from ..backbones.dsod import ceil_max_pool, preact_conv


class ReusedHalf(nn.Sequential):
    """2x2/2 max-pool (rounding up) then BN-ReLU-1x1 conv.

    Args:
        in_channels (int): Channels of the previous scale.
        out_channels (int): Channels of the reused half.
        **kwargs: ``conv_cfg``, ``norm_cfg``, ``act_cfg`` of the conv.
    """

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.add_module('pool', ceil_max_pool())
        self.add_module('conv', preact_conv(in_channels, out_channels, 1,
                                            **kwargs))


class LearnReuseBlock(BaseModule):
    """One extra DSOD scale (``add_bl_layer2``): ``concat(reused, learned)``.

    The learned half is BN-ReLU-1x1 conv to ``half_channels`` then
    BN-ReLU-3x3/2 conv (padding 1); the reused half is :class:`ReusedHalf`.
    Both halve the size rounding up (10 -> 5 -> 3 -> 2), so the output has
    ``2 * half_channels`` channels at ``ceil(H / 2) x ceil(W / 2)``.

    Args:
        in_channels (int): Channels of the previous scale.
        half_channels (int): Channels of each half.
        **kwargs: ``conv_cfg``, ``norm_cfg``, ``act_cfg`` of the convs.
    """

    def __init__(self, in_channels: int, half_channels: int, **kwargs) -> None:
        super().__init__()
        self.learned = nn.Sequential(
            preact_conv(in_channels, half_channels, 1, **kwargs),
            preact_conv(half_channels, half_channels, 3, stride=2, **kwargs))
        self.reused = ReusedHalf(in_channels, half_channels, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward function."""
        return torch.cat([self.reused(x), self.learned(x)], dim=1)


@MODELS.register_module()
class DSODNeck(BaseModule):
    """DSOD's dense prediction structure over a backbone's feature maps.

    Scale 1 is the first backbone map as is (DSOD's "First"). Each further
    backbone map becomes a scale either as is or, with a non-zero entry in
    ``reuse_channels``, concatenated with a reused half of the previous scale
    (DSOD's "Second" = block-4 transition (256) + max-pooled First squeezed
    to 256). Then one :class:`LearnReuseBlock` per entry of
    ``extra_channels`` adds a scale at half the size of the previous one.

    DSOD300 at 300x300: ``in_channels=(800, 256), reuse_channels=(256,),
    extra_channels=(256, 128, 128, 128)`` gives six scales of 38, 19, 10, 5,
    3, 2 pixels with 800, 512, 512, 256, 256, 256 channels. The last scale
    is 2x2, not the 1x1 of the Caffe code's comment: a 3x3/2 conv with
    padding 1 and a 2x2/2 max-pool rounding up both map 3 to 2.

    Args:
        in_channels (Sequence[int]): Channels of the backbone maps, finest
            first; consecutive maps must differ in size by a factor 2
            (rounded up) wherever a reused half is concatenated.
        reuse_channels (Sequence[int]): For backbone maps 2..n, channels of
            the reused half concatenated to that map; 0 keeps the map as is.
            Length ``len(in_channels) - 1``.
        extra_channels (Sequence[int]): Channels of each half of every extra
            scale (the scale has twice as many).
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='ReLU')``.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init for convs and constant 1 for norms.

    Example:
        >>> import torch
        >>> from vovdet.models import DSODNeck
        >>> neck = DSODNeck((800, 256), (256, ), (256, 128, 128, 128)).eval()
        >>> feats = (torch.rand(1, 800, 38, 38), torch.rand(1, 256, 19, 19))
        >>> for out in neck(feats):
        ...     print(tuple(out.shape))
        (1, 800, 38, 38)
        (1, 512, 19, 19)
        (1, 512, 10, 10)
        (1, 256, 5, 5)
        (1, 256, 3, 3)
        (1, 256, 2, 2)
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 reuse_channels: Sequence[int],
                 extra_channels: Sequence[int],
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 init_cfg: OptMultiConfig = [
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(
                         type='Constant',
                         val=1,
                         layer=['_BatchNorm', 'GroupNorm'])
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = tuple(in_channels)
        reuse_channels = tuple(reuse_channels)
        extra_channels = tuple(extra_channels)
        if not in_channels:
            raise ValueError('in_channels must name at least one backbone map')
        if len(reuse_channels) != len(in_channels) - 1:
            raise ValueError(
                f'reuse_channels needs one entry per backbone map after the '
                f'first ({len(in_channels) - 1}), got {reuse_channels}')
        if any(c < 0 for c in reuse_channels) or any(
                c <= 0 for c in extra_channels):
            raise ValueError(
                f'reuse_channels must be >= 0 and extra_channels > 0, got '
                f'{reuse_channels} and {extra_channels}')
        self.in_channels = in_channels
        conv_kwargs = dict(
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)

        out_channels = [in_channels[0]]
        # keyed by the index of the backbone map the half is appended to
        self.reused_halves = nn.ModuleDict()
        for i, reuse in enumerate(reuse_channels, 1):
            if reuse:
                self.reused_halves[str(i)] = ReusedHalf(
                    out_channels[-1], reuse, **conv_kwargs)
            out_channels.append(in_channels[i] + reuse)
        self.extra_scales = nn.ModuleList()
        for half in extra_channels:
            self.extra_scales.append(
                LearnReuseBlock(out_channels[-1], half, **conv_kwargs))
            out_channels.append(2 * half)
        self.out_channels = tuple(out_channels)

    def forward(self, inputs: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, ...]:
        """Forward function.

        Args:
            inputs (Sequence[Tensor]): Backbone maps, finest first.

        Returns:
            tuple[Tensor]: The prediction scales, finest first.
        """
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'DSODNeck expects {len(self.in_channels)} '
                             f'backbone maps, got {len(inputs)}')
        outs: List[torch.Tensor] = [inputs[0]]
        for i, x in enumerate(inputs[1:], 1):
            if str(i) in self.reused_halves:
                reused = self.reused_halves[str(i)](outs[-1])
                x = torch.cat([x, reused], dim=1)
            outs.append(x)
        for block in self.extra_scales:
            outs.append(block(outs[-1]))
        return tuple(outs)
