"""Config handling shared by the train and test entry points."""
import argparse
import ast
import os
import os.path as osp
import sys
import traceback
from typing import Any, Callable, List, Optional

from mmengine.config import Config, DictAction

from vovdet.utils import (check_top_level_overrides, inherited_top_level_keys,
                          unread_options)


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` for ``--cfg-options``, refusing an entry
    without ``=`` with an argparse error that names it (mmengine's raises a
    bare ``ValueError: not enough values to unpack``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for kv in values:
            if '=' not in kv:
                parser.error(
                    f"{option_string} entry '{kv}' has no '=': write "
                    f'KEY=VALUE, e.g. {kv}=...')
        super().__call__(parser, namespace, values, option_string)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Arguments that ``tools/train.py`` and ``tools/test.py`` share."""
    parser.add_argument(
        '--work-dir', help='folder for logs, checkpoints and metrics '
        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config entries, e.g. '
        'train_dataloader.batch_size=4 or key="[a,b]"; no spaces')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_*.sh use pytorch)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_cfg_options(parser: argparse.ArgumentParser,
                    what: str = 'before building the model') -> None:
    """The ``--cfg-options`` argument of the deploy and analysis tools."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help=f'override config entries {what}, e.g. key=value or '
        'key="[a,b]"; no spaces')


def require_files(**paths: str) -> None:
    """Stop with ``error: <what> '<path>' does not exist`` for the first
    keyword (``config=...``, ``checkpoint=...``) naming no file."""
    for what, path in paths.items():
        if not osp.isfile(path):
            raise SystemExit(f"error: {what.replace('_', ' ')} '{path}' "
                             f'does not exist')


class ConfigSyntaxError(ValueError):
    """A config file that is not valid Python, with its path and line."""


class ConfigNotFoundError(FileNotFoundError):
    """The config file named on the command line does not exist."""


def check_config_syntax(config: str) -> None:
    """Parse ``config`` as Python, naming the file on a syntax error.

    mmengine parses the top config once without a file name (its lazy-import
    check), so its ``SyntaxError`` points at ``File "<unknown>"``; base
    configs are checked by mmengine itself, which names them.

    Raises:
        ConfigSyntaxError: The file, line, column, offending line and
            Python's reason.
    """
    with open(config, encoding='utf-8') as f:
        source = f.read()
    try:
        ast.parse(source, filename=config)
    except SyntaxError as e:
        line = (e.text or '').rstrip('\n')
        raise ConfigSyntaxError(
            f'config file {config}, line {e.lineno}, column {e.offset}: '
            f'{e.msg}\n    {line}\nfix the Python syntax there') from None


def load_config(config: str, args: argparse.Namespace) -> Config:
    """Read ``config`` and apply the common command-line overrides.

    Args:
        config (str): Path of the config file.
        args (Namespace): Parsed arguments (see :func:`add_common_args`).

    Returns:
        Config: The config with ``launcher``, ``--cfg-options`` and
        ``work_dir`` applied.

    Raises:
        ConfigOverrideError: The file (if it inherits) or ``--cfg-options``
            sets a top-level ``data_root``, ``metainfo`` or ``num_classes``
            that does not reach the datasets or the model
            (:mod:`vovdet.utils.config_check`).
    """
    if not osp.isfile(config):
        raise ConfigNotFoundError(f"config file '{config}' does not exist")
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    check_config_syntax(config)
    cfg = Config.fromfile(config)
    check_top_level_overrides(cfg, inherited_top_level_keys(config), config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        for message in unread_options(cfg, args.cfg_options):
            print(f'[vovdet] warning: {message}', file=sys.stderr,
                  flush=True)
        cfg.merge_from_dict(args.cfg_options)
        check_top_level_overrides(cfg, args.cfg_options, '--cfg-options')
    drop_idle_persistent_workers(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def drop_idle_persistent_workers(cfg: Config) -> List[str]:
    """Turn off ``persistent_workers`` on loaders with ``num_workers=0``.

    mmdet's dataset bases set ``persistent_workers=True``, so lowering
    ``num_workers`` to 0 (e.g. by ``--cfg-options``) made PyTorch's
    ``DataLoader`` fail with "persistent_workers option needs num_workers >
    0", naming neither loader nor key. Persistent workers need worker
    processes, so with none the option is dropped, with a warning naming the
    loader.

    Returns:
        list[str]: The loaders changed.
    """
    changed = []
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if (loader and loader.get('persistent_workers')
                and loader.get('num_workers', 0) == 0):
            loader.persistent_workers = False
            changed.append(name)
            print(f'[vovdet] {name}.num_workers is 0: '
                  f'{name}.persistent_workers set to False (it needs '
                  f'worker processes)', file=sys.stderr, flush=True)
    return changed


def build_runner(cfg: Config):
    """Build the runner (``runner_type`` from the config if set).

    The processes it forks (data-loader workers) die with it
    (:func:`vovdet.utils.children_die_with_parent`); a GN ``num_groups``
    that does not divide a layer's width and a neck ``in_channels`` that
    does not match the backbone are reported by layer and config key.

    Raises:
        ModelConfigError: The model config does not fit together.
    """
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner

    from vovdet.utils import (ModelConfigError, adapt_dist_cfg_for_device,
                              check_neck_channels, children_die_with_parent,
                              explain_group_norm_error, init_cpu_distributed)
    if cfg.launcher != 'none':
        adapt_dist_cfg_for_device(cfg)
        init_cpu_distributed(cfg.launcher)
    # The visualizer is a process-wide instance per name: without one, the
    # runner names it after its own run, so several runs in one process
    # (benchmarks, tests) each get theirs.
    if cfg.get('visualizer'):
        cfg.visualizer.pop('name', None)
    children_die_with_parent()
    try:
        if 'runner_type' in cfg:
            runner = RUNNERS.build(cfg)
        else:
            runner = Runner.from_cfg(cfg)
    except ValueError as e:
        message = explain_group_norm_error(cfg.model, e)
        if message is None:
            raise
        raise ModelConfigError(message) from e
    check_neck_channels(runner.model, cfg.model)
    return runner


def parse(parser: argparse.ArgumentParser,
          argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse ``argv`` (``sys.argv[1:]`` when None)."""
    return parser.parse_args(argv)


def run_cli(main: Callable[[], Any],
            end_process: Optional[Callable[[int], None]] = None) -> None:
    """Run a tool's ``main`` and turn expected user errors (missing config
    files, config syntax errors, top-level config values a child set
    without effect, missing data or inference inputs, malformed
    annotations, model configs that do not fit their data or themselves,
    non-finite losses, unsafe, corrupt, missing or misfitting checkpoints,
    a work dir in use, models that cannot be re-parameterised or exported,
    a missing ``deploy`` extra) into an ``error: ...`` message and exit
    status 1 instead of a traceback.

    A distributed run then destroys its process group and ends through
    ``end_process`` with the exit status it would have had (0, 1 after an
    error, with the traceback printed first). See
    :func:`vovdet.utils.end_distributed_process` for why it does not return
    to the interpreter. A run without a process group returns or raises as
    usual.

    Args:
        main (callable): The tool's entry point, called without arguments.
        end_process (callable, optional): Ends a distributed run, given the
            exit status. Defaults to
            :func:`vovdet.utils.end_distributed_process`.
    """
    from vovdet.apis.infer import InferenceInputError
    from vovdet.deploy import (ExportError, MissingDeployDependency,
                               ReparameterizationError)
    from vovdet.engine import CheckpointMismatchError, NonFiniteLossError
    from vovdet.utils import (CheckpointNotFoundError, ConfigOverrideError,
                              CorruptCheckpointError, DatasetNotFoundError,
                              MalformedAnnotationError, ModelConfigError,
                              UnsafeCheckpointError, WorkDirBusyError,
                              end_distributed_process, shutdown_distributed)
    end_process = end_process or end_distributed_process
    try:
        try:
            main()
        except (CheckpointMismatchError, CheckpointNotFoundError,
                ConfigNotFoundError, ConfigOverrideError, ConfigSyntaxError,
                CorruptCheckpointError, DatasetNotFoundError, ExportError,
                InferenceInputError, MalformedAnnotationError,
                MissingDeployDependency, ModelConfigError,
                NonFiniteLossError, ReparameterizationError,
                UnsafeCheckpointError, WorkDirBusyError) as e:
            print(f'error: {e}', file=sys.stderr)
            raise SystemExit(1) from None
    except BaseException as e:
        if not shutdown_distributed():
            raise
        if isinstance(e, SystemExit):
            code = _exit_status(e)
        else:
            traceback.print_exc()
            code = 1
        end_process(code)
        raise
    if shutdown_distributed():
        end_process(0)


def _exit_status(e: SystemExit) -> int:
    """The status Python would exit with for ``e`` (printing a message)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1
