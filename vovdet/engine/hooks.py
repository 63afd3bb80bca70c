"""Hooks that stop a run going wrong before it costs a checkpoint, and
write and check checkpoints."""
import collections
import math
import os.path as osp
from typing import Any, Dict, Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper

from vovdet.utils.checkpoint import to_plain
from vovdet.utils.fileio import atomic_write, remove_stale_temp_files
from vovdet.utils.model_check import state_dict_fit, strip_ddp_prefix


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


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


@HOOKS.register_module()
class PortableCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` writing checkpoints that any process
    can load, and a ``last_checkpoint`` pointer that cannot be left empty.

    - ``before_save_checkpoint``: every entry but ``state_dict`` goes
      through :func:`vovdet.utils.to_plain`, so the file holds only tensors
      and plain containers and a stock ``torch.load(path,
      weights_only=True)`` reads it without vovdet or mmengine imported;
      :func:`vovdet.utils.safe_load_checkpoint` (mmengine's loader once
      vovdet is imported) turns the entries back for ``--resume``.
    - ``last_checkpoint`` is written atomically (mmengine truncates and
      rewrites it, so a kill in between left it empty). It holds the
      checkpoint's absolute path, as mmengine's does, so mmengine's own
      ``--resume`` still reads it; ``tools/train.py --resume`` resolves it
      against the work dir's own files
      (:func:`vovdet.utils.find_resume_checkpoint`), so a moved or copied
      work dir resumes from its own checkpoint.
    - ``before_train`` deletes the hidden temporary files a save killed
      midway left in the checkpoint folder
      (:func:`vovdet.utils.remove_stale_temp_files`).

    Arguments are mmengine's ``CheckpointHook``'s.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process() or '://' in str(self.out_dir):
            return
        removed = remove_stale_temp_files(self.out_dir)
        if removed:
            runner.logger.warning(
                f'removed {len(removed)} temporary file(s) a killed save '
                f"left behind: {', '.join(map(osp.basename, removed))}")

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in list(checkpoint):
            if key != 'state_dict':
                checkpoint[key] = to_plain(checkpoint[key], key)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine 0.10.7's method, with the pointer written by
        # _write_last_checkpoint instead of a plain open(..., 'w').
        if self.max_keep_ckpts > 0:
            if len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step:
                pass
            else:
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    _step = self.keep_ckpt_ids.popleft()
                    if is_main_process():
                        ckpt_path = self.file_backend.join_path(
                            self.out_dir, self.filename_tmpl.format(_step))
                        if self.file_backend.isfile(ckpt_path):
                            self.file_backend.remove(ckpt_path)
                        elif self.file_backend.isdir(ckpt_path):
                            self.file_backend.rmtree(ckpt_path)
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids',
                                               list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if is_main_process():
            self._write_last_checkpoint(runner)

    def _write_last_checkpoint(self, runner) -> None:
        """Point ``<work_dir>/last_checkpoint`` at the checkpoint just
        saved (its absolute path; a URL stays as it is)."""
        target = str(self.last_ckpt)
        if '://' not in target:
            target = osp.abspath(target)
        atomic_write(target.encode('utf-8'),
                     osp.join(runner.work_dir, 'last_checkpoint'))


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Check, in one summary, that a loaded checkpoint fits the model.

    mmengine loads a checkpoint of another architecture with one warning
    line per missing or mis-shaped tensor (60 for VoVNetV2-39 weights in a
    V2-19-slim model) and carries on. ``tools/test.py`` registers this hook
    with ``refuse_mismatch=True``: any model tensor missing from the
    checkpoint or of another shape is an error that gives the counts and
    the first keys. ``tools/train.py`` registers it with
    ``refuse_mismatch=False`` for ``load_from`` and ``--resume``: what fits
    is loaded and one warning line gives the counts (mmengine's own list is
    not printed), but a checkpoint of which no backbone tensor fits is
    refused, since training would start from a model without its weights.

    Args:
        filename (str): The checkpoint, for the messages.
        refuse_mismatch (bool): Refuse any missing or mis-shaped tensor.
    """

    priority = 'VERY_HIGH'

    def __init__(self, filename: str, refuse_mismatch: bool) -> None:
        self.filename = filename
        self.refuse_mismatch = refuse_mismatch

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        model_state = model.state_dict()
        state = checkpoint.get('state_dict', checkpoint)
        fit = state_dict_fit(model_state, state)
        if fit.exact:
            return
        config = runner.cfg.filename or 'the config'
        backbone_fit, backbone_total = fit.loaded_under('backbone.')
        if self.refuse_mismatch and (fit.missing or fit.mismatched):
            raise CheckpointMismatchError(
                f"checkpoint '{self.filename}' does not fit the model of "
                f"{config}: {fit.summary()}. It was trained with another "
                'architecture (backbone arch, neck or head widths, '
                'num_classes): test it with the config it was trained with')
        if backbone_total and not backbone_fit:
            raise CheckpointMismatchError(
                f"checkpoint '{self.filename}' fits none of the "
                f"{backbone_total} backbone tensors of {config}: "
                f'{fit.summary()}. It is a checkpoint of another '
                'architecture; point load_from at weights of this model '
                '(tools/convert_weights.py converts timm/torchvision '
                'backbones)')
        runner.logger.warning(
            f"checkpoint '{self.filename}' fits the model only in part, "
            f'the rest keeps its initialisation: {fit.summary()}')
        # What does not fit is replaced by the model's own tensors (and
        # unused keys dropped), so mmengine loads what fits and has
        # nothing left to list.
        loaded = set(fit.loaded)
        stripped = strip_ddp_prefix(state)
        merged = collections.OrderedDict(
            (key, stripped[key] if key in loaded else value)
            for key, value in model_state.items())
        if hasattr(state, '_metadata'):
            merged._metadata = state._metadata
        if 'state_dict' in checkpoint:
            checkpoint['state_dict'] = merged
        else:
            checkpoint.clear()
            checkpoint.update(merged)
