"""Learning benchmark: train a DSOD shapes config from scratch, report AP50.

``tools/analysis/dsod_learning.py`` is the command line. The benchmark
generates the synthetic shapes dataset if it is missing, trains the config
for its schedule (or ``iters`` iterations, the schedule scaled to fit),
evaluates the final checkpoint on the held-out VOC-format test split with
mmdet's ``VOCMetric`` (11-point AP at IoU 0.5) and reports AP50 together
with the training loss at the start and the end.
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

DEFAULT_CONFIG = 'configs/vovnet27slim_dsod160_shapes.py'


def scaled_config(config: str,
                  data_root: str,
                  iters: Optional[int] = None,
                  batch_size: Optional[int] = None,
                  cfg_options: Optional[Dict] = None) -> Config:
    """The config pointed at ``data_root``, optionally with a new length.

    Args:
        config (str): A VOC-format shapes config.
        data_root (str): Shapes dataset root (holds ``VOC2007/``).
        iters (int, optional): Training iterations. The iteration
            boundaries of every scheduler (warm-up, decay) are scaled by
            ``iters / max_iters`` so the schedule keeps its shape.
        batch_size (int, optional): Images per training iteration.
        cfg_options (dict, optional): Further overrides, merged first.

    Returns:
        Config: The modified config.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    data_root = data_root.rstrip('/') + '/'
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    if iters is not None:
        if iters < 1:
            raise ValueError(f'iters must be positive, got {iters}')
        old = cfg.train_cfg.max_iters
        for scheduler in cfg.param_scheduler:
            for key in ('begin', 'end'):
                if key in scheduler:
                    scheduler[key] = max(round(scheduler[key] * iters / old),
                                         1 if key == 'end' else 0)
        cfg.train_cfg.max_iters = iters
        cfg.train_cfg.val_interval = iters
        cfg.default_hooks.checkpoint.interval = iters
        cfg.default_hooks.logger.interval = min(
            cfg.default_hooks.logger.interval, iters)
        cfg.log_processor.window_size = min(cfg.log_processor.window_size,
                                            iters)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    return cfg


def loss_curve(work_dir: str) -> List[Tuple[int, float]]:
    """``(iteration, loss)`` pairs logged by mmengine under ``work_dir``."""
    points = []
    for folder, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            with open(osp.join(folder, 'scalars.json')) as f:
                for line in f:
                    record = json.loads(line)
                    if 'loss' in record and 'iter' in record:
                        points.append((record['iter'], record['loss']))
    return sorted(points)


def run_learning_benchmark(config: str = DEFAULT_CONFIG,
                           data_root: str = 'data/shapes/',
                           work_dir: str = 'work_dirs/dsod_learning',
                           iters: Optional[int] = None,
                           batch_size: Optional[int] = None,
                           data_spec: Optional[Dict] = None,
                           cfg_options: Optional[Dict] = None) -> Dict:
    """Train ``config`` on the shapes data, test it, return the figures.

    Args:
        config (str): A VOC-format shapes config.
        data_root (str): Where the shapes dataset is (generated if missing).
        work_dir (str): Logs, the final checkpoint and the used config.
        iters (int, optional): Training iterations; the config's own
            schedule when None.
        batch_size (int, optional): Images per iteration; the config's when
            None.
        data_spec (dict, optional): Arguments of
            :func:`vovdet.datasets.generate_shapes_dataset` overriding the
            demo's data set (600 train / 100 test images of 192 px).
        cfg_options (dict, optional): Config overrides (e.g. loader
            workers), applied before the above.

    Returns:
        dict: ``config``, ``iters``, ``batch_size``, ``first_loss`` and
        ``last_loss`` (the first and last logged training loss), ``ap50``
        (VOC 11-point AP at IoU 0.5, in percent) and ``minutes``.
    """
    from vovdet.apis import test as test_api
    from vovdet.apis import train as train_api
    from vovdet.apis.demo import ensure_shapes_data

    start = time.time()
    ensure_shapes_data(data_root, **(data_spec or {}))
    cfg = scaled_config(config, data_root, iters, batch_size, cfg_options)
    os.makedirs(work_dir, exist_ok=True)
    used = osp.join(work_dir, osp.basename(config))
    cfg.dump(used)
    train_api.main([used, '--work-dir', work_dir])
    max_iters = cfg.train_cfg.max_iters
    checkpoint = osp.join(work_dir, f'iter_{max_iters}.pth')
    metrics = test_api.main([used, checkpoint, '--work-dir', work_dir])
    losses = loss_curve(work_dir)
    if not losses:
        raise RuntimeError(f'no training loss was logged under {work_dir}')
    return dict(
        config=config,
        iters=max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        first_loss=losses[0][1],
        last_loss=losses[-1][1],
        ap50=100 * metrics['pascal_voc/AP50'],
        minutes=(time.time() - start) / 60)


def format_results(results: Sequence[Dict]) -> str:
    """A markdown table of :func:`run_learning_benchmark` results."""
    lines = [
        '| config | iterations x images | loss first -> last | '
        'AP50 (VOC 11-pt) | minutes |', '|---|---|---|---|---|'
    ]
    for r in results:
        lines.append(
            f"| {osp.basename(r['config'])} | {r['iters']} x "
            f"{r['batch_size']} | {r['first_loss']:.3f} -> "
            f"{r['last_loss']:.3f} | {r['ap50']:.1f} | {r['minutes']:.1f} |")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    """Run the benchmark for every ``--config`` and print the table."""
    parser = argparse.ArgumentParser(
        description='Train DSOD shapes configs from scratch on a CPU and '
        'print their held-out AP50')
    parser.add_argument(
        '--config', nargs='+', default=[DEFAULT_CONFIG],
        help=f'shapes configs to train (default {DEFAULT_CONFIG})')
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default='work_dirs/dsod_learning')
    parser.add_argument(
        '--iters', type=int,
        help="training iterations (default: the config's schedule)")
    parser.add_argument(
        '--batch-size', type=int,
        help="images per iteration (default: the config's)")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='further config overrides, e.g. train_dataloader.num_workers=2')
    args = parser.parse_args(argv)
    results = []
    for config in args.config:
        name = osp.splitext(osp.basename(config))[0]
        results.append(
            run_learning_benchmark(
                config, args.data_root, osp.join(args.work_dir, name),
                args.iters, args.batch_size,
                cfg_options=args.cfg_options))
    print(format_results(results), flush=True)
    return results
