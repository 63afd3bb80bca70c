"""``tools/train.py``: train a detector from an mmdet config."""
import argparse
import contextlib
from typing import List, Optional

import torch

from vovdet.engine import CheckpointFitHook
from vovdet.utils import (WorkDirLock, check_dataset_files, check_num_classes,
                          find_resume_checkpoint, launch_rank)

from .common import add_common_args, build_runner, load_config, parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision (needs a CUDA device)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help="scale the lr by (real batch) / auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the checkpoint the work dir\'s '
        'last_checkpoint names when CKPT is omitted')
    add_common_args(parser)
    return parser


def main(argv: Optional[List[str]] = None):
    """Train as ``tools/train.py`` would; returns the runner."""
    args = parse(build_parser(), argv)
    cfg = load_config(args.config, args)

    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device; this machine has '
                             'none. Train in fp32 (drop --amp).')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise SystemExit('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    check_dataset_files(cfg, splits=('train', 'val'))
    check_num_classes(cfg, splits=('train', 'val'))
    # rank 0 holds the work dir for the whole (distributed) run
    with (WorkDirLock(cfg.work_dir) if launch_rank() == 0
          else contextlib.nullcontext()):
        if args.resume is not None:
            cfg.resume = True
            cfg.load_from = (find_resume_checkpoint(cfg.work_dir)
                             if args.resume == 'auto' else args.resume)
        runner = build_runner(cfg)
        if cfg.load_from:
            runner.register_hook(
                CheckpointFitHook(cfg.load_from, refuse_mismatch=False))
        runner.train()
    return runner
