"""``tools/reparameterize.py``: write a trained detector's deploy-form
checkpoint and config (library: :mod:`vovdet.deploy.reparameterize`)."""
import argparse
from typing import List, Optional

from vovdet.deploy import ReparameterizationError, reparameterize_checkpoint

from .common import add_cfg_options, parse, require_files


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
    add_cfg_options(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/reparameterize.py``; returns the written paths."""
    args = parse(build_parser(), argv)
    require_files(config=args.config, checkpoint=args.checkpoint)
    try:
        result = reparameterize_checkpoint(args.config, args.checkpoint,
                                           args.out, args.out_config,
                                           args.cfg_options)
    except ReparameterizationError as err:
        raise SystemExit(f'error: {err}') from None
    print(f"re-parameterised {', '.join(result['modules'])}: wrote "
          f"{result['checkpoint']} and {result['config']}")
    return result
