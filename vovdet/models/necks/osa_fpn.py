"""OSA-FPN and OSA-PAFPN: feature pyramids that fuse by one-shot aggregation.

No paper or official repository defines an OSA-based FPN (``paper_specs.md``
§8: VoVNet's detectors use a plain FPN; detectron2's "FPNLite" is an FPN with
128 channels), so this is vovdet's own design. It carries the VoVNet paper's
argument (Sec. 3, Eq. 1) into the neck:

* **concatenate, do not sum**: at each top-down step the upsampled coarser
  output and the backbone map of the level are concatenated;
* **aggregate once**: the concatenation runs through one OSA module
  (:class:`~vovdet.models.layers.OSAModule`): ``layers_per_module`` 3x3
  conv-norm-act layers of ``module_channels``, each feeding the next, then
  the module input and every layer output are concatenated once and reduced
  by a single 1x1 conv-norm-act to ``out_channels``. There is no 1x1 lateral
  conv before the concatenation and no 1x1 bottleneck inside the module:
  FPN's lateral 1x1 (c_in != c_out, k = 1) is its layer farthest from the
  memory-access-cost bound, and the aggregation conv already mixes the
  backbone channels;
* **c_in = c_out** in every 3x3 layer after the first.

The defaults (``module_channels`` = 3/4 of ``out_channels``, one layer per
module) are the cheapest setting whose MAC per multiply-add is below FPN's at
800x1333 on VoVNet-39 features; ``docs/necks.md`` has the analysis.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..layers.osa import OSAModule, osa_conv3x3

EXTRA_CONV_SOURCES = ('on_input', 'on_lateral', 'on_output')


@MODELS.register_module()
class OSAFPN(BaseModule):
    """Feature pyramid whose top-down fusions are OSA modules.

    With ``L`` used backbone levels ``C_0 .. C_{L-1}`` (fine to coarse)::

        P_{L-1} = OSA_{L-1}(C_{L-1})
        P_i     = OSA_i(concat(C_i, up(P_{i+1})))     [+ up(P_{i+1})]

    where the bracketed shortcut is added when ``identity`` is set. Extra
    levels follow mmdet's :class:`~mmdet.models.necks.FPN` exactly: stride-2
    max-pooling of the last output, or stride-2 3x3 convs on the source
    chosen by ``add_extra_convs``. The arguments it shares with ``FPN`` mean
    the same, so ``type='FPN'`` can be swapped for ``type='OSAFPN'`` in any
    mmdet config; the outputs have the same number, channels and strides.

    Args:
        in_channels (list[int]): Channels of each backbone level.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels.
        start_level (int): First backbone level used. Defaults to 0.
        end_level (int): Last backbone level used (inclusive); -1 means the
            last one. If it is not the last, no extra level is allowed.
            Defaults to -1.
        add_extra_convs (bool or str): False: extra levels by max-pooling.
            Otherwise a stride-2 3x3 conv-norm-act on ``'on_input'`` (the last
            used backbone map; also what ``True`` means), ``'on_lateral'``
            (FPN's top lateral map; OSA-FPN has no lateral convs, so this is
            the same backbone map as ``'on_input'``) or ``'on_output'`` (the
            last output), then further convs on the previous extra level.
            Defaults to False.
        relu_before_extra_convs (bool): Apply ReLU before the second and later
            extra convs. Defaults to False.
        module_channels (int, optional): Channels of every 3x3 layer in the
            OSA modules. Defaults to None, which means
            ``3 * out_channels // 4`` (192 for 256).
        layers_per_module (int): 3x3 layers per OSA module. Defaults to 1.
        use_ese (bool): Effective Squeeze-Excitation on each module's output
            (VoVNetV2). Defaults to False.
        identity (bool): Add the incoming path's map to each fused output:
            the upsampled coarser map on the top-down path (VoVNetV2's
            identity mapping applied to the part of the module input that
            already has ``out_channels``). The top level has no incoming
            map and no shortcut. Defaults to False.
        depthwise (bool): Make every 3x3 conv of the neck depthwise-separable
            (a depthwise 3x3 without norm, then a pointwise 1x1-norm-act), the
            "lite" variant for the slim/DW backbones. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Required: the OSA layers are
            conv-norm-act convs without bias. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation of every conv-norm-act layer, including
            the extra-level convs. Defaults to ``dict(type='ReLU')``.
        upsample_cfg (dict): ``F.interpolate`` arguments of the top-down
            path; without ``scale_factor`` the coarser map is resized to the
            finer level's size. Defaults to ``dict(mode='nearest')``.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init of the convs.

    Example:
        >>> import torch
        >>> from vovdet.models.necks import OSAFPN
        >>> in_channels = [256, 512, 768, 1024]
        >>> inputs = [torch.rand(1, c, s, s)
        ...           for c, s in zip(in_channels, [32, 16, 8, 4])]
        >>> neck = OSAFPN(in_channels, 256, num_outs=5).eval()
        >>> for out in neck(inputs):
        ...     print(tuple(out.shape))
        (1, 256, 32, 32)
        (1, 256, 16, 16)
        (1, 256, 8, 8)
        (1, 256, 4, 4)
        (1, 256, 2, 2)
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 module_channels: Optional[int] = None,
                 layers_per_module: int = 1,
                 use_ese: bool = False,
                 identity: bool = False,
                 depthwise: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 upsample_cfg: ConfigType = dict(mode='nearest'),
                 init_cfg: OptMultiConfig = dict(
                     type='Kaiming', layer='Conv2d')) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        if norm_cfg is None:
            raise ValueError(
                'OSAFPN needs a norm_cfg: its OSA layers are conv-norm-act '
                'convs without bias; pass e.g. norm_cfg=dict(type=\'GN\', '
                'num_groups=32) or dict(type=\'BN\')')
        if end_level == -1 or end_level == self.num_ins - 1:
            self.backbone_end_level = self.num_ins
            if num_outs < self.num_ins - start_level:
                raise ValueError(
                    f'num_outs={num_outs} is smaller than the '
                    f'{self.num_ins - start_level} backbone levels used; '
                    f'raise num_outs or start_level')
        else:
            if not 0 <= end_level < self.num_ins:
                raise ValueError(f'end_level={end_level} is not a level of '
                                 f'the {self.num_ins} inputs (or -1)')
            self.backbone_end_level = end_level + 1
            if num_outs != end_level - start_level + 1:
                raise ValueError(
                    f'with end_level={end_level} no extra level is allowed: '
                    f'num_outs must be {end_level - start_level + 1}, got '
                    f'{num_outs}')
        if not 0 <= start_level < self.backbone_end_level:
            raise ValueError(f'start_level={start_level} must be in [0, '
                             f'{self.backbone_end_level - 1}]')
        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs and add_extra_convs not in EXTRA_CONV_SOURCES:
            raise ValueError(
                f"add_extra_convs='{add_extra_convs}' is not a source; use "
                f"False, True or one of {', '.join(EXTRA_CONV_SOURCES)}")
        if layers_per_module < 1:
            raise ValueError(f'layers_per_module must be >= 1, got '
                             f'{layers_per_module}')
        self.start_level = start_level
        self.end_level = end_level
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.module_channels = (
            module_channels if module_channels is not None else
            3 * out_channels // 4)
        self.layers_per_module = layers_per_module
        self.use_ese = use_ese
        self.identity = identity
        self.depthwise = depthwise
        self.conv_kwargs = dict(
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.upsample_cfg = dict(upsample_cfg)

        used = self.in_channels[start_level:self.backbone_end_level]
        self.top_down_modules = nn.ModuleList(
            self._osa_module(c if i == len(used) - 1 else c + out_channels)
            for i, c in enumerate(used))

        self.extra_convs = nn.ModuleList()
        extra_levels = num_outs - len(used)
        if add_extra_convs and extra_levels > 0:
            for i in range(extra_levels):
                if i == 0 and add_extra_convs != 'on_output':
                    channels = self.in_channels[self.backbone_end_level - 1]
                else:
                    channels = out_channels
                self.extra_convs.append(self._conv3x3(channels, stride=2))

    def _osa_module(self, in_channels: int) -> OSAModule:
        """An OSA fusion module from ``in_channels`` to ``out_channels``."""
        return OSAModule(
            in_channels,
            self.module_channels,
            self.out_channels,
            self.layers_per_module,
            depthwise=self.depthwise,
            depthwise_reduction=False,
            use_ese=self.use_ese,
            **self.conv_kwargs)

    def _conv3x3(self, in_channels: int, stride: int) -> nn.Module:
        """A 3x3 conv-norm-act to ``out_channels`` (depthwise if set)."""
        return osa_conv3x3(
            in_channels,
            self.out_channels,
            stride=stride,
            depthwise=self.depthwise,
            **self.conv_kwargs)

    def _upsample(self, x: Tensor, size: torch.Size) -> Tensor:
        if 'scale_factor' in self.upsample_cfg:
            return F.interpolate(x, **self.upsample_cfg)
        return F.interpolate(x, size=size, **self.upsample_cfg)

    def _fuse(self, feats: List[Tensor]) -> List[Tensor]:
        """Top-down path: one output per used backbone level, fine first."""
        outs = [self.top_down_modules[-1](feats[-1])]
        for i in range(len(feats) - 2, -1, -1):
            coarser = self._upsample(outs[0], feats[i].shape[2:])
            out = self.top_down_modules[i](torch.cat([feats[i], coarser], 1))
            if self.identity:
                out = out + coarser
            outs.insert(0, out)
        return outs

    def _extra_levels(self, inputs: Sequence[Tensor],
                      outs: List[Tensor]) -> List[Tensor]:
        """Levels above the backbone's, as mmdet's FPN makes them."""
        num_extra = self.num_outs - len(outs)
        extra: List[Tensor] = []
        if num_extra <= 0:
            return extra
        if not self.add_extra_convs:
            x = outs[-1]
            for _ in range(num_extra):
                x = F.max_pool2d(x, 1, stride=2)
                extra.append(x)
            return extra
        if self.add_extra_convs == 'on_output':
            x = outs[-1]
        else:
            x = inputs[self.backbone_end_level - 1]
        for i, conv in enumerate(self.extra_convs):
            if i > 0 and self.relu_before_extra_convs:
                x = F.relu(x)
            x = conv(x)
            extra.append(x)
        return extra

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Forward function.

        Args:
            inputs (Sequence[Tensor]): Backbone maps, one per entry of
                ``in_channels``, fine to coarse.

        Returns:
            tuple[Tensor]: ``num_outs`` maps of ``out_channels``, fine to
            coarse.
        """
        if len(inputs) != self.num_ins:
            raise ValueError(f'{type(self).__name__} was built for '
                             f'{self.num_ins} input levels, got '
                             f'{len(inputs)}')
        feats = list(inputs[self.start_level:self.backbone_end_level])
        outs = self._fuse(feats)
        return tuple(outs + self._extra_levels(inputs, outs))


@MODELS.register_module()
class OSAPAFPN(OSAFPN):
    """OSA-FPN with a PANet bottom-up path whose fusions are OSA modules too.

    After the top-down path of :class:`OSAFPN` gives ``P_0 .. P_{L-1}``::

        N_0 = P_0
        N_i = OSA'_i(concat(P_i, down(N_{i-1})))      [+ down(N_{i-1})]

    ``down`` is a stride-2 3x3 conv-norm-act (``out_channels`` to itself, as
    in mmdet's ``PAFPN``); the shortcut is added when ``identity`` is set.
    Extra levels are made from the ``N`` maps as in :class:`OSAFPN`.
    Like ``PAFPN``, each level must be exactly half the size of the one below
    (pad images to a multiple of the largest stride, e.g.
    ``pad_size_divisor=32``).

    Args:
        Same as :class:`OSAFPN`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        num_levels = len(self.top_down_modules)
        self.downsample_convs = nn.ModuleList(
            self._conv3x3(self.out_channels, stride=2)
            for _ in range(num_levels - 1))
        self.bottom_up_modules = nn.ModuleList(
            self._osa_module(2 * self.out_channels)
            for _ in range(num_levels - 1))

    def _fuse(self, feats: List[Tensor]) -> List[Tensor]:
        """Top-down path, then the bottom-up path."""
        top_down = super()._fuse(feats)
        outs = [top_down[0]]
        for i in range(1, len(top_down)):
            down = self.downsample_convs[i - 1](outs[-1])
            if down.shape[2:] != top_down[i].shape[2:]:
                raise ValueError(
                    f'bottom-up step {i}: the downsampled map is '
                    f'{tuple(down.shape[2:])} but level {i} is '
                    f'{tuple(top_down[i].shape[2:])}; pad the images to a '
                    f'multiple of the largest stride (pad_size_divisor=32)')
            out = self.bottom_up_modules[i - 1](
                torch.cat([top_down[i], down], 1))
            if self.identity:
                out = out + down
            outs.append(out)
        return outs
