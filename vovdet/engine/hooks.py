"""Training hooks that stop a run going wrong before it costs a checkpoint."""
import math
from typing import Any, Dict, Optional

import torch
from mmengine.hooks import Hook
from mmdet.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A training loss or a checkpoint tensor became NaN or infinite."""


def _value(value: Any) -> Optional[float]:
    """A logged value as a float (tensors of one element, numbers)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float)):
        return float(value)
    return None


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training at the first NaN or infinite loss, and never save a
    checkpoint that holds one.

    After every training iteration it reads the loss terms the model
    returned (``loss`` and every ``loss_*``). If one is not finite, it
    raises :class:`NonFiniteLossError` naming the iteration and every term,
    before ``CheckpointHook`` (lower priority) can save the weights the bad
    step produced; ``tools/train.py`` turns that into a one-line error and
    exit status 1. ``before_save_checkpoint`` refuses any checkpoint whose
    ``state_dict`` holds a non-finite tensor, so the last good checkpoint is
    never overwritten by a broken one. (mmdet's ``CheckInvalidLossHook``
    checks only the total every 50 iterations and raises a bare
    ``AssertionError``.)
    """

    priority = 'NORMAL'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        losses = {
            key: _value(value)
            for key, value in (outputs or {}).items()
            if key == 'loss' or key.startswith('loss_')
        }
        if all(v is None or math.isfinite(v) for v in losses.values()):
            return
        terms = ', '.join(f'{key}={value}' for key, value in losses.items())
        raise NonFiniteLossError(
            f'non-finite training loss at iteration {runner.iter + 1}: '
            f'{terms}. Training stopped before saving these weights; lower '
            f'the learning rate (optim_wrapper.optimizer.lr), add '
            f'gradient clipping (optim_wrapper.clip_grad) or a warm-up, and '
            f'resume from the last checkpoint')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key, tensor in checkpoint.get('state_dict', {}).items():
            if (isinstance(tensor, torch.Tensor)
                    and tensor.is_floating_point()
                    and not bool(torch.isfinite(tensor).all())):
                raise NonFiniteLossError(
                    f'refusing to save a checkpoint at iteration '
                    f'{runner.iter}: its tensor {key} holds NaN or infinite '
                    f'values; the last saved checkpoint is kept')
