"""Learning benchmark: train the RefineDet shapes config, report VOC AP50.

``tools/analysis/refinedet_learning.py`` is the command line. The benchmark
generates the synthetic shapes dataset if it is missing (the demo's data
set), trains the config from scratch for its schedule (or ``iters``
iterations, the schedule scaled to fit) without evaluating in between,
tests the final checkpoint on the held-out VOC-format split with mmdet's
``VOCMetric`` (AP at IoU 0.5, 11-point and area) and reports both APs with
the first and last logged value of the total loss and of each of the four
RefineDet losses (ARM and ODM, classification and box), so it shows that
both modules learn.
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config

DEFAULT_CONFIG = 'configs/vovnet19slim_refinedet192_shapes.py'
LOSS_KEYS = ('loss', 'loss_arm_cls', 'loss_arm_bbox', 'loss_odm_cls',
             'loss_odm_bbox')
# the VOCMetric prefixes of configs/_base_/datasets/voc07_ssd320.py
AP_KEYS = dict(ap50_11points='voc_11points/AP50', ap50_area='voc_area/AP50')


def learning_config(config: str,
                    data_root: str,
                    iters: Optional[int] = None,
                    batch_size: Optional[int] = None) -> Config:
    """The config pointed at ``data_root``, trained without validation.

    Args:
        config (str): A VOC-format shapes config.
        data_root (str): Shapes dataset root (holds ``VOC2007/``).
        iters (int, optional): Training iterations. The ``begin``/``end`` of
            every scheduler (warm-up, decay) are scaled by
            ``iters / max_iters`` so the schedule keeps its shape.
        batch_size (int, optional): Images per training iteration.

    Returns:
        Config: The modified config; it checkpoints the last iteration only.
    """
    cfg = Config.fromfile(config)
    data_root = data_root.rstrip('/') + '/'
    for split in ('train', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    # the benchmark tests once at the end; no validation while training
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    cfg.val_cfg = None
    if iters is not None:
        if iters < 1:
            raise ValueError(f'iters must be positive, got {iters}')
        old = cfg.train_cfg.max_iters
        for scheduler in cfg.param_scheduler:
            for key in ('begin', 'end'):
                if key in scheduler:
                    scheduler[key] = max(
                        round(scheduler[key] * iters / old),
                        1 if key == 'end' else 0)
        cfg.train_cfg.max_iters = iters
        cfg.default_hooks.logger.interval = min(
            cfg.default_hooks.logger.interval, iters)
        cfg.log_processor.window_size = min(cfg.log_processor.window_size,
                                            iters)
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters
    cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_iters
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    return cfg


def logged_losses(work_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """``{loss name: [(iteration, value), ...]}`` logged under work_dir."""
    curves = {key: [] for key in LOSS_KEYS}
    for folder, _, files in os.walk(work_dir):
        if 'scalars.json' not in files:
            continue
        with open(osp.join(folder, 'scalars.json')) as f:
            for line in f:
                record = json.loads(line)
                for key in LOSS_KEYS:
                    if key in record and 'iter' in record:
                        curves[key].append((record['iter'], record[key]))
    return {key: sorted(points) for key, points in curves.items()}


def run_refinedet_learning(config: str = DEFAULT_CONFIG,
                           data_root: str = 'data/shapes/',
                           work_dir: str = 'work_dirs/refinedet_learning',
                           iters: Optional[int] = None,
                           batch_size: Optional[int] = None,
                           data_spec: Optional[Dict] = None) -> Dict:
    """Train ``config`` on the shapes data, test it, return the figures.

    Args:
        config (str): A VOC-format shapes config whose test evaluator is the
            two ``VOCMetric`` s of ``voc07_ssd320.py``.
        data_root (str): Where the shapes dataset is (generated if missing).
        work_dir (str): Logs, the final checkpoint and the used config.
        iters (int, optional): Training iterations; the config's own
            schedule when None.
        batch_size (int, optional): Images per iteration; the config's when
            None.
        data_spec (dict, optional): Arguments of
            :func:`vovdet.datasets.generate_shapes_dataset` overriding the
            demo's data set (600 train / 100 test images of 192 px).

    Returns:
        dict: ``config``, ``iters``, ``batch_size``, ``losses`` (``{name:
        (first, last)}`` logged values), ``ap50_11points`` and
        ``ap50_area`` (VOC AP at IoU 0.5, in percent) and ``minutes``.
    """
    from vovdet.apis import test as test_api
    from vovdet.apis import train as train_api
    from vovdet.apis.demo import ensure_shapes_data

    start = time.time()
    ensure_shapes_data(data_root, **(data_spec or {}))
    cfg = learning_config(config, data_root, iters, batch_size)
    os.makedirs(work_dir, exist_ok=True)
    used = osp.join(work_dir, osp.basename(config))
    cfg.dump(used)
    train_api.main([used, '--work-dir', work_dir])
    max_iters = cfg.train_cfg.max_iters
    checkpoint = osp.join(work_dir, f'iter_{max_iters}.pth')
    metrics = test_api.main([used, checkpoint, '--work-dir', work_dir])
    curves = logged_losses(work_dir)
    missing = [key for key, points in curves.items() if not points]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} was logged under "
                           f'{work_dir}; is {config} a RefineDet config?')
    result = dict(
        config=config,
        iters=max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        losses={
            key: (points[0][1], points[-1][1])
            for key, points in curves.items()
        },
        minutes=(time.time() - start) / 60)
    for name, key in AP_KEYS.items():
        result[name] = 100 * metrics[key]
    return result


def format_learning_table(result: Dict) -> str:
    """A markdown table of one :func:`run_refinedet_learning` result."""
    losses = ', '.join(f'{key} {first:.3f} -> {last:.3f}'
                       for key, (first, last) in result['losses'].items())
    return '\n'.join([
        '| config | iterations x images | AP50 (VOC 11-pt) | AP50 (area) '
        '| minutes |', '|---|---|---|---|---|',
        f"| {osp.basename(result['config'])} | {result['iters']} x "
        f"{result['batch_size']} | {result['ap50_11points']:.1f} | "
        f"{result['ap50_area']:.1f} | {result['minutes']:.1f} |", '',
        f'logged losses, first -> last: {losses}'
    ])


def main(argv: Optional[List[str]] = None) -> Dict:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(
        description='Train a RefineDet shapes config from scratch on a CPU '
        'and print its held-out VOC AP50 and loss curves')
    parser.add_argument(
        '--config', default=DEFAULT_CONFIG,
        help=f'shapes config to train (default {DEFAULT_CONFIG})')
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default='work_dirs/refinedet_learning')
    parser.add_argument(
        '--iters', type=int,
        help="training iterations (default: the config's schedule)")
    parser.add_argument(
        '--batch-size', type=int,
        help="images per iteration (default: the config's)")
    args = parser.parse_args(argv)
    result = run_refinedet_learning(args.config, args.data_root,
                                    args.work_dir, args.iters,
                                    args.batch_size)
    print(format_learning_table(result), flush=True)
    return result
