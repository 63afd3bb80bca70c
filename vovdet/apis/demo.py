"""The embedded demo: generate shapes data, train (validating now and
then), test, print the table and draw the curves and predictions."""
import argparse
import glob
import os.path as osp
import time
from typing import Dict, List, Optional

from vovdet.datasets import generate_shapes_dataset, shapes_dataset_ready

DEMO_CONFIG = 'configs/vovnet19slim_maskrcnn_shapes.py'
# Validation every 200 iterations: one evaluation of the 100 held-out images
# took ~10 s on the quiet 2-core host of 2026-12-07 (as long as ~15 training
# iterations), and mmengine validates at the last iteration anyway, so the
# 1,300-iteration demo's six extra evaluations add about a minute.
VAL_INTERVAL = 200
# The demo trains 1,300 iterations, not the config's 600: on the 2-core CPU
# that fits the 15 minutes the demo may take (measured 2026-12-07 on a 2-vCPU
# EPYC host with SparseRoIAlign: 12.0 and 12.5 min in all in two runs, bbox
# AP50 0.822 in both, README; with mmcv's single-threaded RoIAlign 1,000
# iterations took 11.9 min and reached 0.700). Seed 0.
DEMO_ITERS = 1300
# The demo's data set; tests use smaller ones.
DEMO_DATA = dict(num_train=600, num_val=100, image_size=192, min_objects=1,
                 max_objects=4, min_radius=14.0, max_radius=48.0, seed=0)


def ensure_shapes_data(data_root: str, **kwargs) -> None:
    """Generate the shapes dataset into ``data_root`` unless it is there."""
    spec = dict(DEMO_DATA, **kwargs)
    if shapes_dataset_ready(data_root, **spec):
        print(f'[demo] using the shapes dataset in {data_root}', flush=True)
        return
    print(f'[demo] generating the shapes dataset in {data_root} ...',
          flush=True)
    generate_shapes_dataset(data_root, **spec)


def data_root_overrides(data_root: str) -> Dict[str, str]:
    """Config overrides that point a shapes config's train, val and test
    data and its evaluators' annotation files at ``data_root``."""
    data_root = data_root.rstrip('/') + '/'
    ann = f'{data_root}annotations/instances_val.json'
    return {
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'val_evaluator.ann_file': ann,
        'test_evaluator.ann_file': ann,
    }


def _latest_checkpoint(work_dir: str) -> str:
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            return f.read().strip()
    ckpts = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    if not ckpts:
        raise FileNotFoundError(f'training wrote no checkpoint to {work_dir}')
    return ckpts[-1]


def schedule_overrides(config: str, iters: int) -> List[str]:
    """``--cfg-options`` that train ``config`` for ``iters`` iterations:
    ``train_cfg.max_iters`` and the ``end`` of every parameter scheduler that
    ends with the config's training (the cosine decay), so the decay ends
    with the training; a warm-up keeps its length. A run shorter than the
    warm-up starts the decay at its last iteration.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    max_iters = cfg.train_cfg.max_iters
    overrides = [f'train_cfg.max_iters={iters}']
    for i, scheduler in enumerate(cfg.param_scheduler):
        if scheduler.get('end') != max_iters:
            continue
        overrides.append(f'param_scheduler.{i}.end={iters}')
        if scheduler.get('begin', 0) >= iters:
            overrides.append(f'param_scheduler.{i}.begin={iters - 1}')
    return overrides


def format_metrics(metrics: Dict[str, float]) -> str:
    """A small markdown table of the COCO bbox/segm metrics."""
    keys = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
    lines = ['| task | ' + ' | '.join(keys) + ' |',
             '|---|' + '---|' * len(keys)]
    for task in ('bbox', 'segm'):
        vals = [metrics.get(f'coco/{task}_{k}') for k in keys]
        if all(v is None for v in vals):
            continue
        cells = ['-' if v is None or v < 0 else f'{v:.3f}' for v in vals]
        lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def run_demo(argv: Optional[List[str]] = None) -> Dict:
    """Generate the data if missing, train the demo config (validating the
    held-out split every ``--val-interval`` iterations), test it, and draw
    what it learnt.

    Writes into the work dir ``predictions.pkl`` (the test predictions,
    mmdet's ``DumpDetResults``), ``loss_ap50.png`` (training loss and the
    held-out AP50 of each validation against the iteration) and
    ``gt_vs_pred.png`` (ground truth | predictions scoring at least
    ``--score-thr`` on the first 6 held-out images, each object once with
    the model's best guess at its class, unless
    ``--draw-class-duplicates``; the metrics are those of the model's own
    per-class output).

    Returns:
        dict: The test metrics (``coco/bbox_mAP_50`` etc.) and
        ``demo/val_ap50`` (``{metric: [(iteration, AP50), ...]}`` of the
        validations), ``demo/detections`` (test predictions scoring at
        least ``--score-thr``), ``demo/class_duplicates`` (how many of them
        overlap a higher-scoring one of another class,
        :func:`vovdet.analysis.demo_report.class_duplicates`; the pictures
        leave them out), ``demo/drawn_detections`` (how many of the
        predictions scoring at least ``--score-thr`` would be drawn, over
        all held-out images),
        ``demo/curves_png`` and ``demo/gt_vs_pred_png``.
    """
    from mmengine.config import Config
    from mmengine.fileio import load

    from vovdet.analysis.demo_report import (CLASS_DUPLICATE_IOU,
                                             count_class_duplicates,
                                             draw_gt_vs_pred,
                                             plot_loss_and_ap)
    from vovdet.analysis.learning import logged_losses, logged_metrics
    from vovdet.apis import test as test_api
    from vovdet.apis import train as train_api

    parser = argparse.ArgumentParser(description=run_demo.__doc__)
    parser.add_argument('--config', default=DEMO_CONFIG)
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--val-interval', type=int, default=VAL_INTERVAL,
        help='evaluate the held-out split every N training iterations (and '
        f'at the last) for the AP curve; 0: never (default {VAL_INTERVAL})')
    parser.add_argument(
        '--iters', type=int, default=DEMO_ITERS,
        help='training iterations; the schedules that end with the '
        f"config's training end there instead (default {DEMO_ITERS}; 0: the "
        "config's own length)")
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='draw, and count class duplicates among, the test predictions '
        'scoring at least this (default 0.3)')
    parser.add_argument(
        '--draw-class-duplicates', action='store_true',
        help='draw every prediction above --score-thr, also those that box '
        'an object a higher-scoring prediction of another class already '
        'boxes (default: one label per object)')
    parser.add_argument(
        '--cfg-options', nargs='+', default=[],
        help='extra overrides passed to train and test')
    args = parser.parse_args(argv)
    if args.val_interval < 0:
        parser.error(f'--val-interval must be 0 (no validation) or '
                     f'positive, got {args.val_interval}')
    if args.iters < 0:
        parser.error(f"--iters must be 0 (the config's) or positive, got "
                     f'{args.iters}')

    start = time.time()
    data_root = args.data_root.rstrip('/') + '/'
    ensure_shapes_data(data_root)
    by_split = {
        split: [f'{key}={value}'
                for key, value in data_root_overrides(data_root).items()
                if key.startswith(split)]
        for split in ('train', 'val', 'test')
    }
    test_overrides = by_split['test']
    if args.val_interval:
        val_overrides = by_split['val'] + [
            f'train_cfg.val_interval={args.val_interval}'
        ]
        no_validation = []
    else:
        # mmengine validates at the last iteration whatever the interval,
        # and the test step below evaluates that checkpoint anyway; last,
        # so that no val_* option of the user's brings validation back
        val_overrides = []
        no_validation = ['val_dataloader=None', 'val_evaluator=None',
                         'val_cfg=None']
    schedule = schedule_overrides(args.config, args.iters) if args.iters else []
    user_overrides = list(args.cfg_options)
    runner = train_api.main([
        args.config, '--work-dir', args.work_dir, '--cfg-options',
        *by_split['train'], *test_overrides, *schedule, *val_overrides,
        *user_overrides, *no_validation
    ])
    checkpoint = _latest_checkpoint(args.work_dir)
    predictions_file = osp.join(args.work_dir, 'predictions.pkl')
    metrics = test_api.main([
        args.config, checkpoint, '--work-dir', args.work_dir, '--out',
        predictions_file, '--cfg-options', *test_overrides, *user_overrides
    ])
    predictions = load(predictions_file)
    counts = count_class_duplicates(predictions, args.score_thr)
    one_label = not args.draw_class_duplicates
    drawn_detections = counts['one_label' if one_label else 'detections']
    val_ap50 = {
        key: points
        for key, points in logged_metrics(runner.log_dir).items()
        if key.endswith('mAP_50')
    }
    curves_png = osp.join(args.work_dir, 'loss_ap50.png')
    plot_loss_and_ap(logged_losses(runner.log_dir).get('loss', []), val_ap50,
                     curves_png)
    # the config as tested, with the data root and overrides applied
    used = Config.fromfile(osp.join(args.work_dir,
                                    osp.basename(args.config)))
    gt_vs_pred_png = osp.join(args.work_dir, 'gt_vs_pred.png')
    drawn = draw_gt_vs_pred(used.test_dataloader.dataset, predictions,
                            gt_vs_pred_png, score_thr=args.score_thr,
                            one_label_per_object=one_label)
    minutes = (time.time() - start) / 60
    print(f'\n[demo] held-out COCO metrics of {checkpoint} '
          f'(total {minutes:.1f} min):\n{format_metrics(metrics)}\n'
          f"[demo] class duplicates: {counts['class_duplicates']} of the "
          f"{counts['detections']} held-out predictions scoring >= "
          f'{args.score_thr} overlap (IoU >= {CLASS_DUPLICATE_IOU}) a '
          'higher-scoring one of another class in the per-class output '
          'that the metrics score; '
          + (f"one label per object, as drawn, leaves {counts['one_label']}"
             if one_label else 'drawn too (--draw-class-duplicates)') + '\n'
          f'[demo] training loss and held-out AP50 curves: {curves_png}\n'
          f'[demo] ground truth | predictions (score >= {args.score_thr}) '
          f'on {len(drawn)} held-out images: {gt_vs_pred_png}',
          flush=True)
    return dict(metrics,
                **{'demo/val_ap50': val_ap50,
                   'demo/detections': counts['detections'],
                   'demo/class_duplicates': counts['class_duplicates'],
                   'demo/drawn_detections': drawn_detections,
                   'demo/curves_png': curves_png,
                   'demo/gt_vs_pred_png': gt_vs_pred_png})
