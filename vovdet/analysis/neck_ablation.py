"""The shapes-data neck ablation: train FPN, OSA-FPN, PAFPN and OSA-PAFPN
alike, compare AP (one seed; several seeds with mean and standard deviation:
``tools/analysis/learning_benchmark.py``, docs/necks.md).

Each config is trained by ``tools/train.py`` in its own process (the same
code path as a user's run) with the same seed and number of iterations; the
configs evaluate on the held-out split when training ends, and the final
``coco/bbox_mAP`` / ``coco/segm_mAP`` are read back from the run's
``vis_data/scalars.json`` log.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

ABLATION_CONFIGS = (
    'configs/vovnet19slim_fpn_maskrcnn_shapes_ablation.py',
    'configs/vovnet19slim_osafpn_maskrcnn_shapes_ablation.py',
    'configs/vovnet19slim_pafpn_maskrcnn_shapes_ablation.py',
    'configs/vovnet19slim_osapafpn_maskrcnn_shapes_ablation.py',
)
METRIC_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
               'coco/segm_mAP_50')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def final_metrics(work_dir: str) -> Dict[str, float]:
    """The last evaluation logged in a work dir.

    Args:
        work_dir (str): A ``tools/train.py`` work dir; its newest run folder
            (``<timestamp>/vis_data/scalars.json``) is read.

    Returns:
        dict[str, float]: The last logged record that holds
        ``coco/bbox_mAP``, with ``iter`` set to the last training iteration
        logged before it (mmengine logs evaluations by epoch, so their own
        ``step`` is 0 in iteration-based runs).

    Raises:
        FileNotFoundError: No run log, or no evaluation in it.
    """
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not logs:
        raise FileNotFoundError(
            f'no <timestamp>/vis_data/scalars.json under {work_dir}: did '
            f'tools/train.py run with this --work-dir?')
    last = None
    iteration = None
    with open(logs[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'coco/bbox_mAP' in record:
                last = dict(record, iter=iteration)
            elif 'iter' in record:
                iteration = record['iter']
    if last is None:
        raise FileNotFoundError(
            f'{logs[-1]} has no coco/bbox_mAP: the run ended before its '
            f'evaluation (train_cfg.val_interval must divide max_iters)')
    return last


def train_command(config: str,
                  work_dir: str,
                  seed: int,
                  cfg_options: Sequence[str] = (),
                  python: str = sys.executable) -> List[str]:
    """The ``tools/train.py`` command line of one ablation run."""
    options = [f'randomness.seed={seed}'] + list(cfg_options)
    return [python, osp.join(ROOT, 'tools', 'train.py'), config,
            '--work-dir', work_dir, '--cfg-options'] + options


def run_ablation(work_root: str,
                 configs: Sequence[str] = ABLATION_CONFIGS,
                 seed: int = 0,
                 max_iters: Optional[int] = None,
                 cfg_options: Sequence[str] = (),
                 data_root: Optional[str] = None,
                 python: str = sys.executable) -> Dict[str, Dict[str, float]]:
    """Train every config the same way and collect its final metrics.

    Args:
        work_root (str): Each run writes to ``work_root/<config name>``.
        configs (Sequence[str]): Config paths (relative to the repository
            or absolute). Defaults to the four shapes ablation configs.
        seed (int): ``randomness.seed`` of every run. Defaults to 0.
        max_iters (int, optional): Train this many iterations and evaluate
            at the end instead of the configs' own schedule length (the
            LR schedule is not rescaled). Defaults to None.
        cfg_options (Sequence[str]): ``key=value`` overrides for every run,
            e.g. ``train_dataloader.batch_size=2``.
        data_root (str, optional): Shapes data folder. If given, it is
            generated when missing (the demo's data set) and every run is
            pointed at it; otherwise the configs' own data roots are used.
        python (str): Interpreter for ``tools/train.py``. Defaults to this
            one.

    Returns:
        dict[str, dict[str, float]]: Final metrics by config name.
    """
    options = list(cfg_options)
    if max_iters is not None:
        options = [f'train_cfg.max_iters={max_iters}',
                   f'train_cfg.val_interval={max_iters}'] + options
    if data_root is not None:
        from vovdet.apis.demo import ensure_shapes_data
        data_root = data_root.rstrip('/') + '/'
        ensure_shapes_data(data_root)
        ann = f'{data_root}annotations/instances_val.json'
        options = [
            f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'val_evaluator.ann_file={ann}',
            f'test_evaluator.ann_file={ann}',
        ] + options
    results = {}
    for config in configs:
        path = config if osp.isabs(config) else osp.join(ROOT, config)
        name = osp.splitext(osp.basename(path))[0]
        work_dir = osp.join(work_root, name)
        command = train_command(path, work_dir, seed, options, python)
        print('[ablation] ' + ' '.join(command), flush=True)
        proc = subprocess.run(command, cwd=ROOT, env=dict(os.environ))
        if proc.returncode != 0:
            raise RuntimeError(f'training {name} failed with exit status '
                               f'{proc.returncode}; see {work_dir}')
        results[name] = final_metrics(work_dir)
    return results


def format_ablation_table(results: Dict[str, Dict[str, float]]) -> str:
    """Markdown table: one row per run, its iterations and COCO APs."""
    header = ['config', 'iterations'] + [k.split('/')[1] for k in METRIC_KEYS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for name, metrics in results.items():
        cells = [name, str(metrics.get('iter', '-'))] + [
            f'{metrics[k]:.3f}' if k in metrics else '-' for k in METRIC_KEYS
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
