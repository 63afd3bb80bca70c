"""The embedded demo: generate shapes data, train, test, print the table."""
import argparse
import glob
import os.path as osp
import time
from typing import Dict, List, Optional

from vovdet.datasets import generate_shapes_dataset, shapes_dataset_ready

DEMO_CONFIG = 'configs/vovnet19slim_maskrcnn_shapes.py'
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


def run_demo(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Generate the data if missing, train the demo config, test it.

    Returns:
        dict: The test metrics (``coco/bbox_mAP_50`` etc.).
    """
    from vovdet.apis import test as test_api
    from vovdet.apis import train as train_api

    parser = argparse.ArgumentParser(description=run_demo.__doc__)
    parser.add_argument('--config', default=DEMO_CONFIG)
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--cfg-options', nargs='+', default=[],
        help='extra overrides passed to train and test')
    args = parser.parse_args(argv)

    start = time.time()
    data_root = args.data_root.rstrip('/') + '/'
    ensure_shapes_data(data_root)
    data_overrides = [
        f'{key}={value}'
        for key, value in data_root_overrides(data_root).items()
    ]
    user_overrides = list(args.cfg_options)
    # The test step below evaluates the held-out split, so validating it
    # during training as well would only cost time.
    train_api.main([
        args.config, '--work-dir', args.work_dir, '--cfg-options',
        *data_overrides, 'train_cfg.val_interval=1000000000', *user_overrides
    ])
    checkpoint = _latest_checkpoint(args.work_dir)
    metrics = test_api.main([
        args.config, checkpoint, '--work-dir', args.work_dir, '--cfg-options',
        *data_overrides, *user_overrides
    ])
    minutes = (time.time() - start) / 60
    print(f'\n[demo] held-out COCO metrics of {checkpoint} '
          f'(total {minutes:.1f} min):\n{format_metrics(metrics)}',
          flush=True)
    return metrics
