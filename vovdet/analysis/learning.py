"""Learning benchmark: train a shapes config from scratch, report its AP50.

One benchmark serves every detector family (RefineDet, DSOD, ...). It
generates the synthetic shapes dataset if it is missing (the demo's data
set), trains the config from scratch for its schedule (or ``iters``
iterations, the schedule scaled to fit) without evaluating in between, tests
the final checkpoint on the held-out split with the config's own test
evaluator and reports

* every AP50 the evaluator returns (e.g. VOC 11-point and area AP), and
* the first and last logged value of every loss term (``loss`` and each
  ``loss_*``), so it shows that each part of the detector learns.

``tools/analysis/learning_benchmark.py`` is the general command line;
``tools/analysis/refinedet_learning.py`` and ``dsod_learning.py`` run it with
their family's shapes config as the default.
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction


def scaled_config(config: str,
                  data_root: str,
                  iters: Optional[int] = None,
                  batch_size: Optional[int] = None,
                  cfg_options: Optional[Dict] = None) -> Config:
    """The config pointed at ``data_root``, trained without validation.

    Args:
        config (str): A shapes config.
        data_root (str): Shapes dataset root (e.g. holds ``VOC2007/``).
        iters (int, optional): Training iterations. The ``begin``/``end`` of
            every scheduler (warm-up, decay) are scaled by
            ``iters / max_iters`` so the schedule keeps its shape.
        batch_size (int, optional): Images per training iteration.
        cfg_options (dict, optional): Further overrides (e.g. loader
            workers), merged before the above.

    Returns:
        Config: The modified config; it tests once after training and
        checkpoints the last iteration only.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
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
    """``{loss name: [(iteration, value), ...]}`` of every training loss
    (``loss`` and each ``loss_*``) mmengine logged under ``work_dir``."""
    curves: Dict[str, List[Tuple[int, float]]] = {}
    for folder, _, files in os.walk(work_dir):
        if 'scalars.json' not in files:
            continue
        with open(osp.join(folder, 'scalars.json')) as f:
            for line in f:
                record = json.loads(line)
                if 'iter' not in record:
                    continue
                for key, value in record.items():
                    if key == 'loss' or key.startswith('loss_'):
                        curves.setdefault(key, []).append(
                            (record['iter'], value))
    return {key: sorted(points) for key, points in sorted(curves.items())}


def run_learning_benchmark(config: str,
                           data_root: str = 'data/shapes/',
                           work_dir: str = 'work_dirs/learning',
                           iters: Optional[int] = None,
                           batch_size: Optional[int] = None,
                           data_spec: Optional[Dict] = None,
                           cfg_options: Optional[Dict] = None) -> Dict:
    """Train ``config`` on the shapes data, test it, return the figures.

    Args:
        config (str): A shapes config whose test evaluator reports AP50.
        data_root (str): Where the shapes dataset is (generated if missing).
        work_dir (str): Logs, the final checkpoint and the used config.
        iters (int, optional): Training iterations; the config's own
            schedule when None.
        batch_size (int, optional): Images per iteration; the config's when
            None.
        data_spec (dict, optional): Arguments of
            :func:`vovdet.datasets.generate_shapes_dataset` overriding the
            demo's data set (600 train / 100 test images of 192 px).
        cfg_options (dict, optional): Config overrides, applied first.

    Returns:
        dict: ``config``, ``iters``, ``batch_size``, ``losses`` (``{name:
        (first, last)}`` logged values), ``ap50`` (``{metric name: AP at
        IoU 0.5 in percent}``) and ``minutes``.
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
    curves = logged_losses(work_dir)
    if 'loss' not in curves:
        raise RuntimeError(f'no training loss was logged under {work_dir}')
    ap50 = {
        key: 100 * value
        for key, value in metrics.items() if key.endswith('AP50')
    }
    if not ap50:
        raise RuntimeError(
            f"the test evaluator of {config} reported no AP50 (got "
            f"{', '.join(metrics) or 'nothing'})")
    return dict(
        config=config,
        iters=max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        losses={key: (points[0][1], points[-1][1])
                for key, points in curves.items()},
        ap50=ap50,
        minutes=(time.time() - start) / 60)


def format_results(results: Sequence[Dict]) -> str:
    """A markdown table of :func:`run_learning_benchmark` results: one row
    per run with every AP50, then each run's loss terms, first -> last."""
    names = list(dict.fromkeys(k for r in results for k in r['ap50']))
    lines = [
        '| config | iterations x images | ' +
        ' | '.join(names) + ' | minutes |',
        '|---|---|' + '---|' * len(names) + '---|'
    ]
    for r in results:
        aps = ' | '.join(
            f"{r['ap50'][k]:.1f}" if k in r['ap50'] else '-' for k in names)
        lines.append(f"| {osp.basename(r['config'])} | {r['iters']} x "
                     f"{r['batch_size']} | {aps} | {r['minutes']:.1f} |")
    lines.append('')
    for r in results:
        losses = ', '.join(f'{key} {first:.3f} -> {last:.3f}'
                           for key, (first, last) in r['losses'].items())
        lines.append(f"{osp.basename(r['config'])} logged losses, "
                     f'first -> last: {losses}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None,
         default_config: Optional[str] = None,
         work_dir: str = 'work_dirs/learning') -> List[Dict]:
    """Run the benchmark for every ``--config`` and print the table.

    Args:
        argv (list[str], optional): Command-line arguments.
        default_config (str, optional): ``--config`` when not given; the
            option is required when None.
        work_dir (str): The default ``--work-dir``; each config trains in
            a sub-directory named after it.
    """
    parser = argparse.ArgumentParser(
        description='Train shapes configs from scratch on a CPU and print '
        'their held-out AP50 and loss curves')
    parser.add_argument(
        '--config', nargs='+',
        default=None if default_config is None else [default_config],
        required=default_config is None,
        help='shapes configs to train' +
        ('' if default_config is None else f' (default {default_config})'))
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default=work_dir)
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
