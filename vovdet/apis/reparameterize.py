"""``tools/reparameterize.py``: write a trained detector's deploy-form
checkpoint and config (library: :mod:`vovdet.deploy.reparameterize`)."""
import argparse
import os.path as osp
from typing import List, Optional

from vovdet.deploy import ReparameterizationError, reparameterize_checkpoint

from .common import CfgOptionsAction, parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Re-parameterise a trained detector (RepVGG backbone) '
        'into its deploy form and write a deploy config beside it')
    parser.add_argument('config', help='config the checkpoint was trained '
                        'with')
    parser.add_argument('checkpoint', help='trained detector checkpoint')
    parser.add_argument('out', help='deploy checkpoint to write')
    parser.add_argument(
        '--out-config', help='deploy config to write (default: '
        '<dir of OUT>/<config name>_deploy.py)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config entries before building the model')
    return parser


def main(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/reparameterize.py``; returns the written paths."""
    args = parse(build_parser(), argv)
    if not osp.isfile(args.config):
        raise SystemExit(f"error: config '{args.config}' does not exist")
    if not osp.isfile(args.checkpoint):
        raise SystemExit(
            f"error: checkpoint '{args.checkpoint}' does not exist")
    try:
        result = reparameterize_checkpoint(args.config, args.checkpoint,
                                           args.out, args.out_config,
                                           args.cfg_options)
    except ReparameterizationError as err:
        raise SystemExit(f'error: {err}') from None
    print(f"re-parameterised {', '.join(result['modules'])}: wrote "
          f"{result['checkpoint']} and {result['config']}")
    return result
