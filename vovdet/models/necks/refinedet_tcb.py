"""RefineDet's transfer connection blocks (TCB) and its extra stride-64 level.

Reference:
    Zhang et al., "Single-Shot Refinement Neural Network for Object
    Detection", CVPR 2018 (Sec. 3, Fig. 2); official Caffe code
    (``AddExtraLayers`` in the ResNet/VoVNet RefineDet scripts, see
    ``paper_specs.md`` §3 and §2b).
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule

from ..layers.res_bottleneck import res_bottleneck


def _match_size(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop (or zero-pad) ``x`` on the bottom/right to ``ref``'s H x W.

    A 2x2/2 deconv doubles the coarser map exactly; the two sizes differ
    only for inputs not divisible by 64 (the paper uses 320 and 512).
    """
    h, w = ref.shape[-2:]
    pad_h, pad_w = max(0, h - x.size(-2)), max(0, w - x.size(-1))
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x[..., :h, :w]


@MODELS.register_module()
class RefineDetTCB(BaseModule):
    """Transfer connection blocks of RefineDet, with the extra level.

    The backbone gives the stride 8/16/32 maps; a stride-2 ResNet bottleneck
    (``res_bottleneck``: 1x1/2 -> 3x3 -> 1x1 with a projection shortcut,
    ``extra_mid_channels``-``extra_mid_channels``-``4*extra_mid_channels``,
    Caffe's ``res6`` = 128-128-512) on the last map adds the stride-64 level.
    These four "source" maps feed the anchor refinement module (ARM).

    The TCBs turn them, top-down, into the maps of the object detection
    module (ODM), every conv followed by ``norm_cfg``:

    - top level: ``3x3 conv-ReLU -> 3x3 conv-ReLU -> 3x3 conv-ReLU``;
    - other levels: ``3x3 conv-ReLU -> 3x3 conv``, summed with a 2x2 stride-2
      deconvolution (+ norm, no activation) of the coarser TCB output, then
      ``ReLU -> 3x3 conv-ReLU``.

    ``forward`` returns one flat tuple of ``2 * num_levels`` maps: the
    ``num_levels`` source maps (ARM inputs, ``source_channels``) followed by
    the ``num_levels`` TCB outputs (ODM inputs, ``out_channels`` each),
    finest first in both halves.

    Args:
        in_channels (Sequence[int]): Channels of the backbone maps, finest
            (stride 8) first. Defaults to (512, 768, 1024) (VoVNet-39/57
            stages 3-5).
        out_channels (int): Channels of every TCB. Defaults to 256.
        extra_mid_channels (int): Width of the extra bottleneck; the extra
            level has ``4 * extra_mid_channels`` channels. Defaults to 128.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm after every conv and deconv (BN in the
            VoVNet-RefineDet models; GN for small batches). Defaults to
            ``dict(type='BN', requires_grad=True)``.
        transfer_connection (bool): Build the TCBs. False is the RefineDet
            paper's Table 3 ablation ("transfer connection block" off): the
            ODM reads the source maps, as the ARM does, and ``forward``
            returns the source maps twice. Defaults to True.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming for the convs (the TCB ``ConvModule`` s
            apply the same init themselves; norms start at 1/0).

    Example:
        >>> import torch
        >>> neck = RefineDetTCB(in_channels=(8, 16, 32), out_channels=16,
        ...                     extra_mid_channels=4).eval()
        >>> feats = [torch.rand(1, c, s, s)
        ...          for c, s in zip((8, 16, 32), (40, 20, 10))]
        >>> for out in neck(feats):
        ...     print(tuple(out.shape))
        (1, 8, 40, 40)
        (1, 16, 20, 20)
        (1, 32, 10, 10)
        (1, 16, 5, 5)
        (1, 16, 40, 40)
        (1, 16, 20, 20)
        (1, 16, 10, 10)
        (1, 16, 5, 5)
    """

    def __init__(self,
                 in_channels: Sequence[int] = (512, 768, 1024),
                 out_channels: int = 256,
                 extra_mid_channels: int = 128,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 transfer_connection: bool = True,
                 init_cfg: OptMultiConfig = dict(
                     type='Kaiming', layer='Conv2d')) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = tuple(in_channels)
        if not in_channels:
            raise ValueError('RefineDetTCB needs at least one backbone map '
                             'in in_channels, e.g. (512, 768, 1024)')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.extra_block = res_bottleneck(
            in_channels[-1],
            extra_mid_channels,
            stride=2,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg)
        self.source_channels = in_channels + (
            self.extra_block.planes * self.extra_block.expansion, )
        self.num_levels = len(self.source_channels)
        self.transfer_connection = transfer_connection
        # channels of the ODM's maps, per level
        self.odm_channels = ((out_channels, ) * self.num_levels
                             if transfer_connection else self.source_channels)
        kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.lateral_convs = nn.ModuleList()
        self.upsample_deconvs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        if not transfer_connection:
            return
        for level, channels in enumerate(self.source_channels):
            is_top = level == self.num_levels - 1
            self.lateral_convs.append(
                nn.Sequential(
                    ConvModule(
                        channels, out_channels, 3, padding=1, **kwargs),
                    # below the top, the activation comes after the sum
                    ConvModule(
                        out_channels,
                        out_channels,
                        3,
                        padding=1,
                        act_cfg=dict(type='ReLU') if is_top else None,
                        **kwargs)))
            self.output_convs.append(
                ConvModule(
                    out_channels, out_channels, 3, padding=1, **kwargs))
            if not is_top:
                self.upsample_deconvs.append(
                    ConvModule(
                        out_channels,
                        out_channels,
                        2,
                        stride=2,
                        conv_cfg=dict(type='deconv'),
                        norm_cfg=norm_cfg,
                        act_cfg=None))

    def forward(self, inputs: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, ...]:
        """Forward function.

        Args:
            inputs (Sequence[Tensor]): Backbone maps, finest first, with
                ``in_channels`` channels.

        Returns:
            tuple[Tensor]: The ``num_levels`` ARM source maps, then the
            ``num_levels`` TCB outputs (the source maps again without
            ``transfer_connection``).
        """
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f'RefineDetTCB expects {len(self.in_channels)} backbone maps '
                f'(in_channels={self.in_channels}), got {len(inputs)}; check '
                f'the backbone out_indices')
        sources = list(inputs) + [self.extra_block(inputs[-1])]
        if not self.transfer_connection:
            return tuple(sources) * 2
        outs = [None] * self.num_levels
        outs[-1] = self.output_convs[-1](self.lateral_convs[-1](sources[-1]))
        for level in range(self.num_levels - 2, -1, -1):
            lateral = self.lateral_convs[level](sources[level])
            up = _match_size(
                self.upsample_deconvs[level](outs[level + 1]), lateral)
            outs[level] = self.output_convs[level](F.relu(lateral + up))
        return tuple(sources) + tuple(outs)
