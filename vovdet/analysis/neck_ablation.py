"""The shapes-data neck ablation: train FPN, OSA-FPN, PAFPN and OSA-PAFPN
alike, compare AP (one seed; several seeds with mean and standard deviation:
``tools/analysis/learning_benchmark.py``, docs/necks.md), and put each neck's
accuracy beside its latency (:func:`tradeoff_points`, the accuracy-versus-
latency plot of ``tools/analysis/neck_tradeoff.py``).

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
from typing import Dict, List, Optional, Sequence, Tuple

ABLATION_CONFIGS = (
    'configs/vovnet19slim_fpn_maskrcnn_shapes_ablation.py',
    'configs/vovnet19slim_osafpn_maskrcnn_shapes_ablation.py',
    'configs/vovnet19slim_pafpn_maskrcnn_shapes_ablation.py',
    'configs/vovnet19slim_osapafpn_maskrcnn_shapes_ablation.py',
)
METRIC_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
               'coco/segm_mAP_50')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Where each ablation config's neck was timed: (table, row) of the demo-size
# latency tables in docs/results/necks (tools/analysis/neck_benchmark.py
# --arch V2-19-slim --shape 192 192 --out-channels 128, docs/necks.md). The
# RepVGG neck is timed as it is deployed, folded, with BN: the inference-form
# table.
LATENCY_ROWS = {
    'vovnet19slim_fpn_maskrcnn_shapes_ablation': ('v2_19slim_192_gn16', 'FPN'),
    'vovnet19slim_pafpn_maskrcnn_shapes_ablation':
    ('v2_19slim_192_gn16', 'PAFPN'),
    'vovnet19slim_osafpn_maskrcnn_shapes_ablation':
    ('v2_19slim_192_gn16', 'OSA-FPN'),
    'vovnet19slim_osapafpn_maskrcnn_shapes_ablation':
    ('v2_19slim_192_gn16', 'OSA-PAFPN'),
    'vovnet19slim_osafpnlite_maskrcnn_shapes_ablation':
    ('v2_19slim_192_gn16', 'OSA-FPN lite'),
    'vovnet19slim_osafpnrep_maskrcnn_shapes_ablation':
    ('v2_19slim_192_bn_inference', 'OSA-FPN rep'),
    # A variant trained with --cfg-options is keyed by the config's name and
    # its options (learning.run_label). These are the defaults before issue
    # 14's second redesign (half-width CSP parts; CSP-OSA bottom-up fusions)
    # and that OSA-PAFPN with the shortcut.
    'vovnet19slim_osafpn_maskrcnn_shapes_ablation '
    'model.neck.expand_ratio=0.5': ('v2_19slim_192_gn16', 'OSA-FPN e=0.5'),
    'vovnet19slim_osapafpn_maskrcnn_shapes_ablation '
    'model.neck.expand_ratio=0.5 model.neck.bottom_up=osa':
    ('v2_19slim_192_gn16', 'OSA-PAFPN e=0.5 osa'),
    'vovnet19slim_osapafpn_maskrcnn_shapes_ablation '
    'model.neck.expand_ratio=0.5 model.neck.bottom_up=osa '
    'model.neck.identity=True':
    ('v2_19slim_192_gn16', 'OSA-PAFPN e=0.5 osa identity'),
    # The depth knob at 3 layers per module (issue 14's 2,000-iteration
    # runs), timed with the defaults in its own table.
    'vovnet19slim_osafpn_maskrcnn_shapes_ablation '
    'model.neck.layers_per_module=3':
    ('v2_19slim_192_gn16_depth', 'OSA-FPN n=3'),
}


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


def tradeoff_points(results: Sequence[Dict],
                    latency_dir: str,
                    metric: str = 'coco/bbox_mAP',
                    rows: Optional[Dict[str, Tuple[str, str]]] = None
                    ) -> List[Dict]:
    """Each ablation config's accuracy (mean ± std over its seeds) beside its
    neck's latency.

    Args:
        results (Sequence[dict]): Runs of
            :func:`vovdet.analysis.learning.run_learning_benchmark` (the
            ``--out`` JSON of ``tools/analysis/learning_benchmark.py``).
        latency_dir (str): Folder of ``neck_benchmark`` JSON tables.
        metric (str): A ``coco_ap`` key of the runs, in percent.
        rows (dict, optional): Config name (no ``.py``, then the run's
            ``cfg_options`` as ``key=value`` if it has any) -> (table, row
            name); :data:`LATENCY_ROWS` when None.

    Returns:
        list[dict]: In first-seen order: ``config``, ``neck`` (the row
        name), ``seeds``, ``mean``, ``std`` and ``values`` of ``metric``,
        ``latency_ms``, ``latency_vs_fpn`` (the neck's median latency over
        FPN's in the same table) and ``paired_ratio`` / ``reference`` (the
        table's paired ratio to its own reference, FPN or PAFPN).

    Raises:
        KeyError: A config with no latency row, or a row missing from its
            table; the message names both and the fix.
    """
    from vovdet.analysis.learning import mean_std, run_label
    rows = LATENCY_ROWS if rows is None else rows
    groups: Dict[str, List[Dict]] = {}
    for r in results:
        # the config's name without .py, then its cfg_options, if any
        name = run_label(r).replace('.py', '', 1)
        groups.setdefault(name, []).append(r)
    tables: Dict[str, Dict[str, Dict]] = {}
    points = []
    for name, runs in groups.items():
        if name not in rows:
            raise KeyError(
                f'{name} has no latency row: add it to LATENCY_ROWS in '
                f'{__name__} (table and row of its neck in {latency_dir})')
        table, row_name = rows[name]
        if table not in tables:
            with open(osp.join(latency_dir, f'{table}.json')) as f:
                tables[table] = {row['name']: row for row in json.load(f)}
        if row_name not in tables[table] or 'FPN' not in tables[table]:
            raise KeyError(
                f'{latency_dir}/{table}.json has no row {row_name!r} (or no '
                f"'FPN' row): rerun tools/analysis/neck_benchmark.py with "
                f'that variant (docs/necks.md)')
        row = tables[table][row_name]
        values = [r['coco_ap'][metric] for r in runs]
        mean, std = mean_std(values)
        points.append(
            dict(config=name, neck=row_name,
                 seeds=[r.get('seed') for r in runs], mean=mean, std=std,
                 values=values, latency_ms=row['latency_ms'],
                 latency_vs_fpn=row['latency_ms'] /
                 tables[table]['FPN']['latency_ms'],
                 paired_ratio=row['latency_ratio'],
                 reference=row['reference']))
    return points


def format_tradeoff_table(points: Sequence[Dict],
                          metric: str = 'coco/bbox_mAP') -> str:
    """Markdown table of :func:`tradeoff_points`."""
    lines = [
        f'| neck | {metric} (mean ± std) | seeds | per seed | latency (ms) '
        '| latency / FPN (medians) | latency / reference (paired) |',
        '|---|---|---|---|---|---|---|'
    ]
    for p in points:
        lines.append(
            f"| {p['neck']} | {p['mean']:.1f} ± {p['std']:.1f} | "
            f"{len(p['values'])} | "
            + ', '.join(f'{v:.1f}' for v in p['values']) +
            f" | {p['latency_ms']:.1f} | {p['latency_vs_fpn']:.2f}× | "
            f"{p['paired_ratio']:.2f}× {p['reference']} |")
    return '\n'.join(lines)


def plot_tradeoff(points: Sequence[Dict], path: str,
                  metric: str = 'coco/bbox_mAP',
                  title: str = 'Neck accuracy versus latency') -> None:
    """Accuracy (mean, std whiskers, seeds as dots) against latency
    relative to FPN, one labelled point per neck."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = []
    for p in points:
        color = '#d62728' if p['neck'].startswith('OSA') else '#1f77b4'
        marker = 's' if 'PAFPN' in p['neck'] else 'o'
        x = p['latency_vs_fpn']
        ax.errorbar(x, p['mean'], yerr=p['std'], fmt=marker, color=color,
                    capsize=3)
        ax.plot([x] * len(p['values']), p['values'], '.', color=color,
                alpha=0.35, markersize=4)
        labels.append(
            ax.annotate(f"{p['neck']} ({len(p['values'])} seeds)",
                        (x, p['mean']), xytext=(6, 4),
                        textcoords='offset points', fontsize=7))
    ax.set_xlabel('neck latency / FPN latency (median, same table; 192 px, '
                  'one CPU thread)')
    ax.set_ylabel(f'{metric} (%), mean ± std over seeds')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # necks of similar latency and accuracy: a label that would cover one
    # placed before it moves below its point, then further out
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda a: a.xy[0]):
        for dy in (4, -11, 14, -21):
            label.xyann = (6, dy)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        placed.append(box)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
