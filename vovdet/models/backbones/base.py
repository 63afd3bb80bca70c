"""Behaviour shared by every vovdet backbone: one freezing rule, one
``norm_eval`` rule and one forward over ``stem`` + ``stage1..stageN``."""
from typing import Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm


class StagedBackbone(BaseModule):
    """Base class of backbones made of a ``stem`` and named stages.

    Subclasses build ``self.stem`` and the stages (registered under the
    names listed in ``self.stage_names``, in order) and set
    ``self.out_indices``, ``self.frozen_stages`` and ``self.norm_eval``,
    then call :meth:`_freeze_stages` at the end of ``__init__``.

    - ``frozen_stages=-1`` freezes nothing, ``0`` the stem, ``k`` the stem
      and the first ``k`` stages; frozen parts stay in eval mode through
      :meth:`train`.
    - ``norm_eval=True`` keeps every BatchNorm in eval mode while training.
    """

    def _arch_setting(self, arch: str, family: str) -> dict:
        """Store ``arch`` and return its row of ``self.arch_settings``.

        Raises:
            ValueError: An unknown ``arch``; the message lists the valid
                ones.
        """
        if arch not in self.arch_settings:
            raise ValueError(f"unknown {family} arch '{arch}'; choose one of "
                             f"{', '.join(self.arch_settings)}")
        self.arch = arch
        return self.arch_settings[arch]

    def _set_stage_args(self, out_indices: Sequence[int], frozen_stages: int,
                        num_stages: int, norm_eval: bool,
                        with_cp: bool) -> Tuple[int, ...]:
        """Validate and store the arguments every staged backbone takes.

        Returns:
            tuple[int]: ``out_indices`` as a tuple (also stored).

        Raises:
            ValueError: An index outside ``[0, num_stages)``, no index, or
                ``frozen_stages`` outside ``[-1, num_stages]``.
        """
        out_indices = tuple(out_indices)
        if not out_indices or not all(0 <= i < num_stages
                                      for i in out_indices):
            raise ValueError(f'out_indices must be a non-empty subset of '
                             f'{tuple(range(num_stages))}, got {out_indices}')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        return out_indices

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        modules = [self.stem] + [
            getattr(self, name)
            for name in self.stage_names[:self.frozen_stages]
        ]
        for m in modules:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward function.

        Args:
            x (Tensor): Images of shape (N, C, H, W).

        Returns:
            tuple[Tensor]: Feature maps of the stages in ``out_indices``.
        """
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'StagedBackbone':
        """Set train mode; frozen stages (and BN if norm_eval) stay in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
