"""OSA-FPN and OSA-PAFPN: feature pyramids that fuse by one-shot aggregation.

No paper or official repository defines an OSA-based FPN (``paper_specs.md``
§8: VoVNet's detectors use a plain FPN; detectron2's "FPNLite" is an FPN with
128 channels), so this is vovdet's own design. It carries the VoVNet paper's
argument (Sec. 3, Eq. 1) into the neck -- concatenate, aggregate once,
c_in = c_out -- at FPN's cost, taking from the OSA relatives that won in
practice:

* **CSP-OSA fusion (YOLOv7's ELAN / ELAN-H).** Each fusion is an
  :class:`~vovdet.models.layers.OSAModule` whose 3x3 layers read only half of
  its input: the other half bypasses them and reaches the one aggregation
  directly (CSPNet's partial split; ELAN in Wang et al., "YOLOv7", 2022,
  Sec. 3.1, mmyolo's ``ELANBlock``). The layers are narrow
  (``module_channels``, 3/8 of the neck width by default) and keep
  c_in = c_out; every layer output is concatenated once and reduced by one
  1x1 conv.
  VoV-GSCSP (Li et al., "Slim-neck by GSConv", 2022) is the same
  one-shot-aggregation-plus-CSP shape built from GSConvs.
* **Concatenation, evaluated without copying it.** A fusion's input is the
  concatenation of the backbone map and the coarser output, mixed by a 1x1
  conv-norm: ``W [C_i; up(P_{i+1})] = W_l C_i + up(W_t P_{i+1})``. A 1x1 conv
  commutes with the resize, so ``W_t`` runs at the coarse resolution (a
  quarter of the pixels), as YOLOv7's and PP-YOLOE's necks reduce before
  they upsample; each part has its own norm (FPN's lateral conv-norm, and
  RepVGG's per-branch BN that folds into its conv) and the activation
  follows the sum.
* **Lite (PP-PicoDet's CSP-PAN).** ``depthwise=True`` makes every 3x3 of the
  neck depthwise-separable (Yu et al., "PP-PicoDet", 2021, Sec. 3.2).
* **Re-parameterisable (PP-YOLOE's CSPRepResStage).** ``repvgg=True`` makes
  the 3x3 layers RepVGG blocks (3x3 + 1x1 + identity branches) that
  ``switch_to_deploy()`` folds into one 3x3 conv each (Xu et al.,
  "PP-YOLOE", 2022, Sec. 2.2; Ding et al., "RepVGG", 2021, Sec. 3.3).

The defaults (``expand_ratio=0.375``: 3/8 of the neck width per CSP part;
``module_channels`` = that part, so c_in = c_out; ``layers_per_module=2``;
OSA-PAFPN's ``bottom_up='pan'``) were chosen by measurement: paired CPU
latency, on a quiet machine, at most 1.10x mmdet's FPN's / PAFPN's at
800x1333 on VoVNet-39 features and at the demo's 192 px on V2-19-slim
features, and the shapes ablation's accuracy; ``docs/necks.md`` has the
measurements.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..layers.osa import OSAModule, osa_conv3x3
from ..layers.repvgg_block import fuse_repvgg_blocks
from ...utils.model_check import is_group_norm_cfg

EXTRA_CONV_SOURCES = ('on_input', 'on_lateral', 'on_output')


@MODELS.register_module()
class OSAFPN(BaseModule):
    """Feature pyramid whose top-down fusions are CSP-OSA modules.

    With ``L`` used backbone levels ``C_0 .. C_{L-1}`` (fine to coarse)::

        P_{L-1} = OSA_{L-1}(act(lat(C_{L-1})))
        P_i     = OSA_i(act(lat(C_i) + up(td(P_{i+1}))))   [+ up(P_{i+1})]

    ``lat`` and ``td`` are 1x1 conv-norms to ``2 * mid`` channels
    (``mid = out_channels * expand_ratio``; together, one 1x1 conv of the
    concatenation ``[C_i; up(P_{i+1})]``, with ``td`` run before the
    upsampling). ``OSA`` passes the first ``mid`` channels straight to its
    concatenation and runs the other ``mid`` through ``layers_per_module``
    chained 3x3 layers of ``module_channels``; the concatenation of its input
    and every layer output is reduced once by a 1x1 conv-norm-act to
    ``out_channels``. The bracketed shortcut is added when ``identity`` is
    set. Extra levels follow mmdet's :class:`~mmdet.models.necks.FPN`
    exactly: stride-2 max-pooling of the last output, or stride-2 3x3 convs
    on the source chosen by ``add_extra_convs``. The arguments it shares
    with ``FPN`` mean the same, so ``type='FPN'`` can be swapped for
    ``type='OSAFPN'`` in any mmdet config; the outputs have the same number,
    channels and strides.

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
            (the same backbone map: the lateral conv here is part of the
            fusion and has ``2 * mid`` channels, not ``out_channels``) or
            ``'on_output'`` (the last output), then further convs on the
            previous extra level. Defaults to False.
        relu_before_extra_convs (bool): Apply ReLU before the second and later
            extra convs. Defaults to False.
        expand_ratio (float): Width of each CSP part, ``mid``, as a fraction
            of ``out_channels``; the fusion input has ``2 * mid`` channels,
            half of which bypass the 3x3 layers. ``mid`` is rounded down to a
            multiple of a GroupNorm's ``num_groups`` (so 0.375 of a
            128-channel neck is 32 with GN(32), 48 with GN(16)).
            Defaults to 0.375.
        module_channels (int, optional): Channels of every 3x3 layer of the
            OSA modules. Defaults to None, which means ``mid``, so that every
            layer has c_in = c_out (96 for a 256-channel neck).
        layers_per_module (int): 3x3 layers per OSA module. Defaults to 2.
        use_ese (bool): Effective Squeeze-Excitation on each module's output
            (VoVNetV2). Defaults to False.
        identity (bool): Add the fused input that already has
            ``out_channels`` to each fused output: the upsampled coarser
            output on the top-down path, the level's top-down output on
            OSA-PAFPN's ``bottom_up='osa'`` path (VoVNetV2's identity
            mapping; the ``'pan'`` path's sum carries it already). The top
            level has no such input and no shortcut. Defaults to False.
        depthwise (bool): Make every 3x3 conv of the neck depthwise-separable
            (a depthwise 3x3 without norm, then a pointwise 1x1-norm-act), the
            "lite" variant for the slim/DW backbones. Defaults to False.
        repvgg (bool): Make the 3x3 layers of the OSA modules RepVGG blocks,
            folded by :meth:`switch_to_deploy`; needs a BatchNorm
            ``norm_cfg`` to be folded. Not with ``depthwise``.
            Defaults to False.
        deploy (bool): Build those RepVGG layers folded, the form
            :meth:`switch_to_deploy` produces (to load re-parameterised
            checkpoints). Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Required: the layers are
            conv-norm convs without bias. Defaults to
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
                 expand_ratio: float = 0.375,
                 module_channels: Optional[int] = None,
                 layers_per_module: int = 2,
                 use_ese: bool = False,
                 identity: bool = False,
                 depthwise: bool = False,
                 repvgg: bool = False,
                 deploy: bool = False,
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
                f'{type(self).__name__} needs a norm_cfg: its layers are '
                f'conv-norm convs without bias; pass e.g. '
                f'norm_cfg=dict(type=\'GN\', num_groups=32) or '
                f'dict(type=\'BN\')')
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
        groups = norm_cfg['num_groups'] if is_group_norm_cfg(norm_cfg) else 1
        self.mid_channels = int(out_channels * expand_ratio) // groups * groups
        if self.mid_channels < 1:
            raise ValueError(
                f'expand_ratio={expand_ratio} leaves no channel of '
                f'out_channels={out_channels} per CSP part (in multiples of '
                f'the {groups} norm groups); raise expand_ratio')
        if repvgg and depthwise:
            raise ValueError('repvgg=True and depthwise=True exclude each '
                             'other: RepVGG layers are dense 3x3 convs')
        if deploy and not repvgg:
            raise ValueError('deploy=True builds the folded RepVGG layers; '
                             'it needs repvgg=True')
        self.start_level = start_level
        self.end_level = end_level
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.expand_ratio = expand_ratio
        self.module_channels = (
            module_channels
            if module_channels is not None else self.mid_channels)
        self.layers_per_module = layers_per_module
        self.use_ese = use_ese
        self.identity = identity
        self.depthwise = depthwise
        self.repvgg = repvgg
        self.deploy = deploy
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.upsample_cfg = dict(upsample_cfg)
        self.activate = self._entry_activation(act_cfg)

        used = self.in_channels[start_level:self.backbone_end_level]
        self.lateral_convs = nn.ModuleList(
            self._entry_conv(c, kernel_size=1) for c in used)
        self.top_down_convs = nn.ModuleList(
            self._entry_conv(out_channels, kernel_size=1)
            for _ in used[:-1])
        self.top_down_modules = nn.ModuleList(
            self._osa_module() for _ in used)

        self.extra_convs = nn.ModuleList()
        extra_levels = num_outs - len(used)
        if add_extra_convs and extra_levels > 0:
            for i in range(extra_levels):
                if i == 0 and add_extra_convs != 'on_output':
                    channels = self.in_channels[self.backbone_end_level - 1]
                else:
                    channels = out_channels
                self.extra_convs.append(
                    self._conv3x3(channels, out_channels, 2, self.act_cfg))

    @property
    def reparameterizable(self) -> bool:
        """Whether :meth:`switch_to_deploy` has branches to fold (the
        inference-form tools skip the neck otherwise)."""
        return self.repvgg

    def switch_to_deploy(self) -> None:
        """Fold every RepVGG layer into one 3x3 conv; idempotent.

        All fused kernels are computed before any layer changes, so a norm
        that cannot be folded (GroupNorm) raises without leaving the neck
        half converted. The deployed neck equals the original in ``eval()``
        mode.
        """
        fuse_repvgg_blocks(self)
        self.deploy = self.repvgg

    @staticmethod
    def _entry_activation(act_cfg: OptConfigType) -> nn.Module:
        """The activation after the sum of a fusion's input parts, in place
        where it can be (as in mmcv's ``ConvModule``): the sum is a fresh
        map, and each full-resolution map allocated costs CPU time."""
        if not act_cfg:
            return nn.Identity()
        act_cfg = dict(act_cfg)
        # the types mmcv's ConvModule builds without ``inplace``
        if act_cfg['type'] not in ('Tanh', 'PReLU', 'Sigmoid', 'HSigmoid',
                                   'Swish', 'GELU'):
            act_cfg.setdefault('inplace', True)
        return build_activation_layer(act_cfg)

    def _entry_conv(self, in_channels: int, kernel_size: int,
                    stride: int = 1) -> nn.Module:
        """One part of a fusion's input conv: conv-norm to ``2 * mid``; the
        activation follows the sum of the parts."""
        if kernel_size == 3:
            return self._conv3x3(in_channels, 2 * self.mid_channels, stride,
                                 act_cfg=None)
        return ConvModule(
            in_channels,
            2 * self.mid_channels,
            kernel_size,
            bias=False,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=None)

    def _osa_module(self) -> OSAModule:
        """A CSP-OSA fusion module from ``2 * mid`` to ``out_channels``."""
        return OSAModule(
            2 * self.mid_channels,
            self.module_channels,
            self.out_channels,
            self.layers_per_module,
            bypass_channels=self.mid_channels,
            depthwise=self.depthwise,
            depthwise_reduction=False,
            repvgg=self.repvgg,
            deploy=self.deploy,
            use_ese=self.use_ese,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def _conv3x3(self, in_channels: int, out_channels: int, stride: int,
                 act_cfg: OptConfigType) -> nn.Module:
        """A 3x3 conv-norm[-act] (depthwise-separable if set)."""
        return osa_conv3x3(
            in_channels,
            out_channels,
            stride=stride,
            depthwise=self.depthwise,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=act_cfg)

    def _upsample(self, x: Tensor, size) -> Tensor:
        if 'scale_factor' in self.upsample_cfg:
            return F.interpolate(x, **self.upsample_cfg)
        return F.interpolate(x, size=size, **self.upsample_cfg)

    def _fuse(self, feats: List[Tensor]) -> List[Tensor]:
        """Top-down path: one output per used backbone level, fine first."""
        top = self.activate(self.lateral_convs[-1](feats[-1]))
        outs = [self.top_down_modules[-1](top)]
        for i in range(len(feats) - 2, -1, -1):
            coarser, size = outs[0], feats[i].shape[2:]
            # in place: the norm's output is not needed by its backward
            fused = self.lateral_convs[i](feats[i])
            fused += self._upsample(self.top_down_convs[i](coarser), size)
            out = self.top_down_modules[i](self.activate(fused))
            if self.identity:
                out = out + self._upsample(coarser, size)
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


BOTTOM_UP_FUSIONS = ('osa', 'pan')


@MODELS.register_module()
class OSAPAFPN(OSAFPN):
    """OSA-FPN with a PANet bottom-up path.

    After the top-down path of :class:`OSAFPN` gives ``P_0 .. P_{L-1}``,
    ``N_0 = P_0`` and each coarser ``N_i`` fuses ``P_i`` with the downsampled
    ``N_{i-1}`` in one of two ways (``bottom_up``)::

        'osa':  N_i = OSA'_i(act(lat'(P_i) + down(N_{i-1})))     [+ P_i]
        'pan':  N_i = conv_i(P_i + down(N_{i-1}))

    ``'osa'``: ``lat'`` is a 1x1 conv-norm and ``down`` a stride-2 3x3
    conv-norm, both to ``2 * mid`` channels: the downsampling conv of
    mmdet's ``PAFPN`` is here the bottom-up part of the fusion's input conv,
    so the concatenation ``[P_i; down(N_{i-1})]`` is never built; the
    shortcut is added when ``identity`` is set. ``'pan'``: PANet's fusion as
    mmdet's ``PAFPN`` builds it (Liu et al., "Path Aggregation Network",
    2018, Sec. 3.1): ``down`` a stride-2 3x3 conv-norm and ``conv`` a 3x3
    conv-norm, both ``out_channels`` wide and without activation
    (depthwise-separable with ``depthwise``), so the top-down output reaches
    every bottom-up level unchanged through the sum; the one-shot
    aggregations are then the top-down path's. Extra levels are made from
    the ``N`` maps as in :class:`OSAFPN`. Like ``PAFPN``, each level must be
    exactly half the size of the one below (pad images to a multiple of the
    largest stride, e.g. ``pad_size_divisor=32``).

    Args:
        bottom_up (str): ``'pan'`` or ``'osa'``, the bottom-up fusion above.
            Defaults to ``'pan'`` (chosen by measurement: docs/necks.md).
        Others: as :class:`OSAFPN`.
    """

    def __init__(self, *args, bottom_up: str = 'pan', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if bottom_up not in BOTTOM_UP_FUSIONS:
            raise ValueError(
                f"bottom_up='{bottom_up}' is not a bottom-up fusion; use one "
                f"of {', '.join(BOTTOM_UP_FUSIONS)}")
        self.bottom_up = bottom_up
        num_levels = len(self.top_down_modules)
        if bottom_up == 'pan':
            width = self.out_channels
            self.downsample_convs = nn.ModuleList(
                self._conv3x3(width, width, 2, act_cfg=None)
                for _ in range(num_levels - 1))
            self.bottom_up_modules = nn.ModuleList(
                self._conv3x3(width, width, 1, act_cfg=None)
                for _ in range(num_levels - 1))
            return
        self.downsample_convs = nn.ModuleList(
            self._entry_conv(self.out_channels, kernel_size=3, stride=2)
            for _ in range(num_levels - 1))
        self.bottom_up_lateral_convs = nn.ModuleList(
            self._entry_conv(self.out_channels, kernel_size=1)
            for _ in range(num_levels - 1))
        self.bottom_up_modules = nn.ModuleList(
            self._osa_module() for _ in range(num_levels - 1))

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
            if self.bottom_up == 'pan':
                outs.append(self.bottom_up_modules[i - 1](top_down[i] + down))
                continue
            fused = self.bottom_up_lateral_convs[i - 1](top_down[i])
            fused += down
            out = self.bottom_up_modules[i - 1](self.activate(fused))
            if self.identity:
                out = out + top_down[i]
            outs.append(out)
        return outs
