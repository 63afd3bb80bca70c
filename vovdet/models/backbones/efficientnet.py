"""EfficientNet backbone with computed compound scaling.

Reference:
    Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
    Neural Networks", ICML 2019 (Table 1: the B0 network; Sec. 3.3: compound
    scaling; official ``efficientnet_builder.py``: the B0-B7 coefficients and
    the rounding rules).

Every variant is the B0 block table below, widened by ``round_filters`` and
deepened by ``round_repeats``; no per-variant channel lists are stored.
"""
import math
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models.layers import InvertedResidual
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from ..layers.checkpoint import checkpoint_keep_running_stats
from .base import StagedBackbone


class MBConvGroup(NamedTuple):
    """One row of the B0 table: ``num_repeats`` MBConv blocks.

    Only the first block of a group has ``stride``; the others have stride 1.
    """
    expand_ratio: int
    kernel_size: int
    stride: int
    out_channels: int
    num_repeats: int


class CompoundScaling(NamedTuple):
    """Scaling coefficients of one EfficientNet.

    ``resolution`` (input size) and ``dropout`` (of the classifier) are not
    used by the backbone; they are kept for configs and documentation.
    ``dropout`` is None for a ``phi``-derived model, where the paper gives
    no value.
    """
    width_factor: float
    depth_factor: float
    resolution: int
    dropout: Optional[float]


# EfficientNet-B0, paper Table 1 / official block strings
# ``r1_k3_s11_e1_i32_o16_se0.25, r2_k3_s22_e6_i16_o24, ...``.
B0_BLOCK_GROUPS = (
    MBConvGroup(expand_ratio=1, kernel_size=3, stride=1, out_channels=16,
                num_repeats=1),
    MBConvGroup(expand_ratio=6, kernel_size=3, stride=2, out_channels=24,
                num_repeats=2),
    MBConvGroup(expand_ratio=6, kernel_size=5, stride=2, out_channels=40,
                num_repeats=2),
    MBConvGroup(expand_ratio=6, kernel_size=3, stride=2, out_channels=80,
                num_repeats=3),
    MBConvGroup(expand_ratio=6, kernel_size=5, stride=1, out_channels=112,
                num_repeats=3),
    MBConvGroup(expand_ratio=6, kernel_size=5, stride=2, out_channels=192,
                num_repeats=4),
    MBConvGroup(expand_ratio=6, kernel_size=3, stride=1, out_channels=320,
                num_repeats=1),
)
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280
# Squeeze width = SE_RATIO * the block's *input* channels (not the expanded
# width), as in the official code.
SE_RATIO = 0.25
# Block groups that form stage1..stage4: each stage ends where the feature
# map is about to be downsampled, i.e. at strides 4, 8, 16, 32 (B0 channels
# 24, 40, 112, 320).
STAGE_BLOCK_GROUPS = ((0, 1), (2, ), (3, 4), (5, 6))

# Official hand-set (width, depth, resolution, dropout) per model.
arch_settings = {
    'b0': CompoundScaling(1.0, 1.0, 224, 0.2),
    'b1': CompoundScaling(1.0, 1.1, 240, 0.2),
    'b2': CompoundScaling(1.1, 1.2, 260, 0.3),
    'b3': CompoundScaling(1.2, 1.4, 300, 0.3),
    'b4': CompoundScaling(1.4, 1.8, 380, 0.4),
    'b5': CompoundScaling(1.6, 2.2, 456, 0.4),
    'b6': CompoundScaling(1.8, 2.6, 528, 0.5),
    'b7': CompoundScaling(2.0, 3.1, 600, 0.5),
}

# Grid-searched compound coefficients (paper Sec. 3.3, Eq. 3):
# depth alpha^phi, width beta^phi, resolution gamma^phi.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
B0_RESOLUTION = 224


def compound_scaling(phi: int) -> CompoundScaling:
    """Coefficients of the compound-scaled model ``phi`` (paper Eq. 3).

    Args:
        phi (int): Compound coefficient, ``phi >= 0``.

    Returns:
        CompoundScaling: ``(BETA**phi, ALPHA**phi, round(224 * GAMMA**phi),
        None)``.
    """
    if not isinstance(phi, int) or phi < 0:
        raise ValueError(f'phi must be a non-negative int, got {phi!r}')
    return CompoundScaling(
        width_factor=BETA**phi,
        depth_factor=ALPHA**phi,
        resolution=round(B0_RESOLUTION * GAMMA**phi),
        dropout=None)


def round_filters(filters: int, width_factor: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width_factor``, rounded to ``divisor``.

    Rounds to the nearest multiple of ``divisor`` (at least ``divisor``) and
    adds one ``divisor`` if that lost more than 10% (official code).

    Args:
        filters (int): B0 channel count.
        width_factor (float): Width multiplier.
        divisor (int): Channel granularity. Defaults to 8.

    Returns:
        int: Scaled channel count.
    """
    scaled = filters * width_factor
    new_filters = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * scaled:
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats: int, depth_factor: float) -> int:
    """Scale a block count by ``depth_factor``, rounded up.

    Args:
        repeats (int): B0 number of blocks.
        depth_factor (float): Depth multiplier.

    Returns:
        int: ``ceil(depth_factor * repeats)``.
    """
    return int(math.ceil(depth_factor * repeats))


class MBConv(InvertedResidual):
    """mmdet's :class:`InvertedResidual` with a BN-safe ``with_cp``.

    mmdet's own forward checkpoints with ``torch.utils.checkpoint``, which
    runs the block's BNs a second time in backward and so updates their
    statistics twice per step; this forward is the same computation through
    :func:`checkpoint_keep_running_stats`. Arguments and state-dict keys are
    those of :class:`InvertedResidual`.
    """

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand_conv(x) if self.with_expand_conv else x
        out = self.depthwise_conv(out)
        if self.with_se:
            out = self.se(out)
        out = self.linear_conv(out)
        if self.with_res_shortcut:
            return x + self.drop_path(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward function."""
        if self.with_cp and x.requires_grad:
            return checkpoint_keep_running_stats(
                self._forward, x, modules=(self, ))
        return self._forward(x)


@MODELS.register_module()
class VoVDetEfficientNet(StagedBackbone):
    """EfficientNet backbone (B0-B7 or any compound coefficient ``phi``).

    Registered as ``VoVDetEfficientNet`` because mmdet already has an
    ``EfficientNet``. The stem is the 3x3/2 conv; the seven MBConv groups
    of B0 are split into ``stage1`` .. ``stage4`` by ``STAGE_BLOCK_GROUPS``
    so that the stage outputs are the last blocks before each downsampling:
    strides 4, 8, 16, 32 with (for B0) 24, 40, 112, 320 channels. With
    ``with_head_conv=True`` stage4 also ends with the 1x1 head conv
    (1280 channels for B0), as in the classifier.

    MBConv blocks are mmdet's :class:`InvertedResidual` (as :class:`MBConv`,
    whose ``with_cp`` keeps BN statistics single-updated) with a swish SE
    whose width is 0.25 x the block input channels; the depthwise convs use
    symmetric ``k // 2`` padding (as the PyTorch ports), not TF "SAME".
    Drop-path on block ``i`` of ``n`` is ``drop_path_rate * i / n``.

    Args:
        arch (str, optional): ``'b0'`` .. ``'b7'`` (official coefficients).
            Defaults to None: ``'b0'`` unless ``phi`` is given.
        phi (int, optional): Compound coefficient; width ``1.1**phi``, depth
            ``1.2**phi``. Mutually exclusive with ``arch``. Defaults to None.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output (0..3 = strides 4, 8,
            16, 32). Defaults to (0, 1, 2, 3).
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem and the first ``k`` stages. Defaults to -1.
        with_head_conv (bool): Append the 1x1 head conv-BN-swish to stage4.
            Defaults to False.
        drop_path_rate (float): Stochastic depth rate of the last block.
            Defaults to 0.2 (official code).
        norm_cfg (dict): Norm layer config. Defaults to BN with the official
            momentum 0.01 (TF 0.99) and eps 1e-3.
        norm_eval (bool): Keep BN layers in eval mode (frozen statistics)
            while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of every MBConv block; the
            recomputation leaves BN running statistics alone.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming init for convs and constant 1 for norms.

    Example:
        >>> import torch
        >>> from vovdet.models import VoVDetEfficientNet
        >>> model = VoVDetEfficientNet(arch='b0').eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 24, 16, 16)
        (1, 40, 8, 8)
        (1, 112, 4, 4)
        (1, 320, 2, 2)
    """
    arch_settings = arch_settings

    def __init__(self,
                 arch: Optional[str] = None,
                 phi: Optional[int] = None,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_head_conv: bool = False,
                 drop_path_rate: float = 0.2,
                 norm_cfg: ConfigType = dict(
                     type='BN', momentum=0.01, eps=1e-3, requires_grad=True),
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
        if arch is not None and phi is not None:
            raise ValueError(f"give either arch or phi, not both (got "
                             f"arch='{arch}', phi={phi})")
        if phi is not None:
            scaling = compound_scaling(phi)
        else:
            arch = 'b0' if arch is None else arch
            if arch not in self.arch_settings:
                raise ValueError(
                    f"unknown EfficientNet arch '{arch}'; choose one of "
                    f"{', '.join(self.arch_settings)} or pass phi=<int>")
            scaling = self.arch_settings[arch]
        num_stages = len(STAGE_BLOCK_GROUPS)
        out_indices = self._set_stage_args(out_indices, frozen_stages,
                                           num_stages, norm_eval, with_cp)
        self.arch = arch
        self.phi = phi
        self.scaling = scaling

        width, depth = scaling.width_factor, scaling.depth_factor
        act_cfg = dict(type='SiLU')
        conv_kwargs = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        stem_channels = round_filters(B0_STEM_CHANNELS, width)
        self.stem = ConvModule(in_channels, stem_channels, 3, stride=2,
                               padding=1, bias=False, **conv_kwargs)

        repeats = [
            round_repeats(g.num_repeats, depth) for g in B0_BLOCK_GROUPS
        ]
        num_blocks = sum(repeats)
        block_index = 0
        block_in = stem_channels
        self.stage_names = []
        stage_channels = []
        for i, group_ids in enumerate(STAGE_BLOCK_GROUPS):
            blocks = []
            for g in group_ids:
                group = B0_BLOCK_GROUPS[g]
                block_out = round_filters(group.out_channels, width)
                for j in range(repeats[g]):
                    mid_channels = block_in * group.expand_ratio
                    # SELayer squeezes to int(mid / ratio); this ratio makes
                    # that int(block_in * SE_RATIO).
                    se_cfg = dict(
                        channels=mid_channels,
                        ratio=group.expand_ratio / SE_RATIO,
                        act_cfg=(act_cfg, dict(type='Sigmoid')))
                    blocks.append(
                        MBConv(
                            block_in,
                            block_out,
                            mid_channels,
                            kernel_size=group.kernel_size,
                            stride=group.stride if j == 0 else 1,
                            se_cfg=se_cfg,
                            with_expand_conv=group.expand_ratio != 1,
                            drop_path_rate=drop_path_rate * block_index /
                            num_blocks,
                            with_cp=with_cp,
                            **conv_kwargs))
                    block_in = block_out
                    block_index += 1
            if with_head_conv and i == num_stages - 1:
                head_channels = round_filters(B0_HEAD_CHANNELS, width)
                blocks.append(
                    ConvModule(block_in, head_channels, 1, bias=False,
                               **conv_kwargs))
                block_in = head_channels
            name = f'stage{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            stage_channels.append(block_in)
        self.out_channels = tuple(stage_channels[i] for i in out_indices)
        self._freeze_stages()
