"""``tools/train.py``: train a detector from an mmdet config."""
import argparse
from typing import List, Optional

import torch

from vovdet.utils import check_dataset_files

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
        help='resume from CKPT, or from the newest checkpoint in the '
        'work dir when CKPT is omitted')
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
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    check_dataset_files(cfg, splits=('train', 'val'))
    runner = build_runner(cfg)
    runner.train()
    return runner
