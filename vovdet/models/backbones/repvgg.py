"""RepVGG backbone with structural re-parameterisation.

Reference:
    Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021
    (Sec. 3.3 re-parameterisation, Table 2 widths/depths, Table 4 params).

A training-time block sums three branches -- 3x3 conv-BN, 1x1 conv-BN and
(when stride is 1 and c_in == c_out) an identity BN -- and applies ReLU.
Because every branch is linear at inference, the three collapse into a
single 3x3 conv with bias; :func:`repvgg_fused_kernel_bias` computes it and
``switch_to_deploy()`` installs it.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.checkpoint import checkpoint_keep_running_stats
from .base import StagedBackbone

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


def fuse_conv_norm(
        kernel: torch.Tensor,
        norm: nn.Module,
        name: str,
        conv_bias: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an inference-mode norm layer into the conv before it.

    ``norm(conv(x)) = conv'(x)`` with ``W' = W * gamma / sigma`` and
    ``b' = beta + (b - mu) * gamma / sigma``, ``sigma = sqrt(running_var +
    eps)`` (``b = 0`` for a bias-free conv).

    Args:
        kernel (Tensor): Conv weight of shape (C_out, C_in / groups, k, k).
        norm (nn.Module): The norm layer that follows the conv.
        name (str): Qualified name of ``norm``, used in the error message.
        conv_bias (Tensor, optional): The conv's bias, if it has one.

    Returns:
        tuple[Tensor, Tensor]: The folded weight and bias.

    Raises:
        ValueError: If ``norm`` is not a BatchNorm with running statistics
            (e.g. GroupNorm, which normalises with per-sample statistics and
            therefore is not a fixed affine map).
    """
    if not isinstance(norm, _BatchNorm) or norm.running_var is None:
        raise ValueError(
            f"cannot re-parameterise '{name}' ({type(norm).__name__}): only "
            f'BatchNorm/SyncBatchNorm with running statistics can be folded '
            f'into a conv. Build RepVGG with norm_cfg=dict(type=\'BN\') or '
            f'dict(type=\'SyncBN\') to use switch_to_deploy().')
    std = (norm.running_var + norm.eps).sqrt()
    gamma = norm.weight if norm.affine else torch.ones_like(std)
    beta = norm.bias if norm.affine else torch.zeros_like(std)
    scale = gamma / std
    shift = -norm.running_mean if conv_bias is None else \
        conv_bias - norm.running_mean
    return kernel * scale.reshape(-1, 1, 1, 1), beta + shift * scale


def identity_kernel(channels: int,
                    groups: int,
                    kernel_size: int = 3,
                    dtype: torch.dtype = torch.float32,
                    device: torch.device = None) -> torch.Tensor:
    """A (grouped) conv kernel that maps its input to itself.

    Output channel ``i`` reads input channel ``i`` of its own group, which is
    channel ``i % (channels / groups)`` within the group, at the centre tap.

    Args:
        channels (int): Input and output channels.
        groups (int): Conv groups.
        kernel_size (int): Odd kernel size. Defaults to 3.
        dtype (torch.dtype): Kernel dtype. Defaults to float32.
        device (torch.device, optional): Kernel device.

    Returns:
        Tensor: Kernel of shape (channels, channels / groups, k, k).
    """
    in_per_group = channels // groups
    kernel = torch.zeros(channels, in_per_group, kernel_size, kernel_size,
                         dtype=dtype, device=device)
    index = torch.arange(channels, device=device)
    centre = kernel_size // 2
    kernel[index, index % in_per_group, centre, centre] = 1
    return kernel


def repvgg_fused_kernel_bias(block: 'RepVGGBlock',
                             name: str = '') -> Tuple[torch.Tensor,
                                                      torch.Tensor]:
    """The single 3x3 conv (weight, bias) equivalent to a training block.

    ``K = K3 + pad(K1) + K_id`` and ``b = b3 + b1 + b_id``, each branch
    folded with its BN (paper Sec. 3.3). Uses the BN running statistics, so
    the result equals the block in ``eval()`` mode. The block is not
    modified.

    Args:
        block (RepVGGBlock): A block that still has its training branches.
        name (str): Qualified name of ``block`` for error messages.
            Defaults to ''.

    Returns:
        tuple[Tensor, Tensor]: Weight (C_out, C_in / groups, 3, 3), bias
        (C_out,).
    """
    prefix = f'{name}.' if name else ''
    with torch.no_grad():
        b3x3, b1x1 = block.branch_3x3, block.branch_1x1
        weight, bias = fuse_conv_norm(b3x3.conv.weight, b3x3.norm,
                                      f'{prefix}branch_3x3.{b3x3.norm_name}')
        weight_1x1, bias_1x1 = fuse_conv_norm(
            b1x1.conv.weight, b1x1.norm,
            f'{prefix}branch_1x1.{b1x1.norm_name}')
        weight = weight + F.pad(weight_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if block.branch_identity is not None:
            kernel = identity_kernel(
                block.out_channels, block.groups, 3, dtype=weight.dtype,
                device=weight.device)
            weight_id, bias_id = fuse_conv_norm(
                kernel, block.branch_identity, f'{prefix}branch_identity')
            weight = weight + weight_id
            bias = bias + bias_id
    return weight, bias


class RepVGGBlock(BaseModule):
    """RepVGG block: ``ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)])``.

    In deploy form the three branches are one 3x3 conv with bias
    (``fused_conv``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the 3x3 and 1x1 convs. Defaults to 1.
        groups (int): Conv groups. Defaults to 1.
        norm_cfg (dict): Norm layer config of the branches.
            Defaults to ``dict(type='BN')``.
        deploy (bool): Build the fused single-conv form directly.
            Defaults to False.
        with_cp (bool): Gradient checkpointing; the recomputation leaves BN
            running statistics alone. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 groups: int = 1,
                 norm_cfg: ConfigType = dict(type='BN'),
                 deploy: bool = False,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.groups = groups
        self.deploy = deploy
        self.with_cp = with_cp
        if deploy:
            self.fused_conv = self._make_fused_conv()
        else:
            branch = dict(stride=stride, groups=groups, bias=False,
                          norm_cfg=norm_cfg, act_cfg=None)
            self.branch_3x3 = ConvModule(
                in_channels, out_channels, 3, padding=1, **branch)
            self.branch_1x1 = ConvModule(
                in_channels, out_channels, 1, padding=0, **branch)
            self.branch_identity = None
            if stride == 1 and in_channels == out_channels:
                self.branch_identity = build_norm_layer(
                    norm_cfg, out_channels)[1]
        self.act = nn.ReLU(inplace=True)

    def _make_fused_conv(self, device=None) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, 3,
                         stride=self.stride, padding=1, groups=self.groups,
                         bias=True, device=device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.act(self.fused_conv(x))
        out = self.branch_3x3(x) + self.branch_1x1(x)
        if self.branch_identity is not None:
            out = out + self.branch_identity(x)
        return self.act(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward function."""
        if self.with_cp and x.requires_grad:
            return checkpoint_keep_running_stats(
                self._forward, x, modules=(self, ))
        return self._forward(x)

    def install_fused_conv(self, weight: torch.Tensor,
                           bias: torch.Tensor) -> None:
        """Replace the training branches by a 3x3 conv with these values.

        Args:
            weight (Tensor): Fused kernel from
                :func:`repvgg_fused_kernel_bias`.
            bias (Tensor): Fused bias.
        """
        # Built on the meta device: initialising weights that are replaced
        # right away would dominate the conversion time of large models.
        fused_conv = self._make_fused_conv(device='meta')
        fused_conv.weight = nn.Parameter(weight)
        fused_conv.bias = nn.Parameter(bias)
        fused_conv.train(self.training)
        del self.branch_3x3, self.branch_1x1, self.branch_identity
        self.fused_conv = fused_conv
        self.deploy = True

    def switch_to_deploy(self) -> None:
        """Fuse the branches into ``fused_conv``; a no-op once deployed."""
        if self.deploy:
            return
        self.install_fused_conv(*repvgg_fused_kernel_bias(self))


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
        blocks = [(name, m) for name, m in self.named_modules()
                  if isinstance(m, RepVGGBlock) and not m.deploy]
        fused = [repvgg_fused_kernel_bias(m, name) for name, m in blocks]
        for (_, block), (weight, bias) in zip(blocks, fused):
            block.install_fused_conv(weight, bias)
        self.deploy = True
        self._freeze_stages()
