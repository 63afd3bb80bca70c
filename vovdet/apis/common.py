"""Config handling shared by the train and test entry points."""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Arguments that ``tools/train.py`` and ``tools/test.py`` share."""
    parser.add_argument(
        '--work-dir', help='folder for logs, checkpoints and metrics '
        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.batch_size=4 or key="[a,b]"; no spaces')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_*.sh use pytorch)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(config: str, args: argparse.Namespace) -> Config:
    """Read ``config`` and apply the common command-line overrides.

    Args:
        config (str): Path of the config file.
        args (Namespace): Parsed arguments (see :func:`add_common_args`).

    Returns:
        Config: The config with ``launcher``, ``--cfg-options`` and
        ``work_dir`` applied.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f"config file '{config}' does not exist")
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def build_runner(cfg: Config):
    """Build the runner (``runner_type`` from the config if set)."""
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner

    from vovdet.utils import adapt_dist_cfg_for_device, init_cpu_distributed
    if cfg.launcher != 'none':
        adapt_dist_cfg_for_device(cfg)
        init_cpu_distributed(cfg.launcher)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def parse(parser: argparse.ArgumentParser,
          argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse ``argv`` (``sys.argv[1:]`` when None)."""
    return parser.parse_args(argv)


def run_cli(main) -> None:
    """Run a tool's ``main`` and turn expected user errors (missing data,
    malformed annotations, unsafe checkpoints, models that cannot be
    re-parameterised) into a one-line message and exit status 1 instead of a
    traceback. A distributed run's process group is destroyed on the way
    out (see :func:`vovdet.utils.shutdown_distributed`)."""
    import sys

    from vovdet.apis.reparameterize import ReparameterizationError
    from vovdet.utils import (DatasetNotFoundError, MalformedAnnotationError,
                              UnsafeCheckpointError, shutdown_distributed)
    try:
        main()
    except (DatasetNotFoundError, MalformedAnnotationError,
            ReparameterizationError, UnsafeCheckpointError) as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        shutdown_distributed()
