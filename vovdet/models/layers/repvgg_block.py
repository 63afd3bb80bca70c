"""The RepVGG block and the math that folds it (structural
re-parameterisation), shared by the RepVGG backbone and the re-parameterisable
OSA-FPN necks.

Reference:
    Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021
    (Sec. 3.3 re-parameterisation).

A training-time block sums three branches -- 3x3 conv-BN, 1x1 conv-BN and
(when stride is 1 and c_in == c_out) an identity BN -- and applies its
activation. Because every branch is linear at inference, the three collapse
into a single 3x3 conv with bias; :func:`repvgg_fused_kernel_bias` computes it,
``RepVGGBlock.switch_to_deploy()`` installs it and
:func:`fuse_repvgg_blocks` converts every block of a model at once.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from .checkpoint import checkpoint_keep_running_stats


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
    """RepVGG block: ``act(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)])``.

    In deploy form the three branches are one 3x3 conv with bias
    (``fused_conv``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the 3x3 and 1x1 convs. Defaults to 1.
        groups (int): Conv groups. Defaults to 1.
        norm_cfg (dict): Norm layer config of the branches.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation after the sum of the branches.
            Defaults to ``dict(type='ReLU', inplace=True)`` (the paper's).
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
                 act_cfg: ConfigType = dict(type='ReLU', inplace=True),
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
        self.act = build_activation_layer(act_cfg)

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


def fuse_repvgg_blocks(model: nn.Module) -> int:
    """Re-parameterise every training-form :class:`RepVGGBlock` of a model.

    All fused kernels are computed before any block changes, so a norm that
    cannot be folded (GroupNorm) raises without leaving the model half
    converted. Blocks already fused are skipped, so it is idempotent.

    Args:
        model (nn.Module): Any module holding RepVGG blocks.

    Returns:
        int: Number of blocks converted by this call.
    """
    blocks = [(name, m) for name, m in model.named_modules()
              if isinstance(m, RepVGGBlock) and not m.deploy]
    fused = [repvgg_fused_kernel_bias(m, name) for name, m in blocks]
    for (_, block), (weight, bias) in zip(blocks, fused):
        block.install_fused_conv(weight, bias)
    return len(blocks)
