"""Learning benchmark: train shapes configs from scratch, report their AP50.

One benchmark serves every detector family (RefineDet, DSOD, ...). It
generates the synthetic shapes dataset if it is missing (the demo's data
set), trains the config from scratch for its schedule (or ``iters``
iterations, the schedule scaled to fit) without evaluating in between, tests
the final checkpoint on the held-out split with the config's own test
evaluator and reports

* every AP50 the evaluator returns (e.g. VOC 11-point and area AP) and a
  COCO evaluator's AP at IoU 0.5:0.95 (``coco/bbox_mAP``, ``coco/segm_mAP``),
  and
* the first and last logged value of every loss term (``loss`` and each
  ``loss_*``), so it shows that each part of the detector learns.

``tools/analysis/learning_benchmark.py`` is the general command line;
``tools/analysis/refinedet_learning.py`` and ``dsod_learning.py`` run it with
their family's shapes config as the default.
"""
import argparse
import copy
import json
import os
import os.path as osp
import textwrap
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmengine.config import Config

from vovdet.apis.common import CfgOptionsAction


def scaled_config(config: str,
                  data_root: str,
                  iters: Optional[int] = None,
                  batch_size: Optional[int] = None,
                  cfg_options: Optional[Dict] = None,
                  val_interval: Optional[int] = None) -> Config:
    """The config pointed at ``data_root``, validated on its test split
    every ``val_interval`` iterations or not at all.

    Args:
        config (str): A shapes config.
        data_root (str): Shapes dataset root (e.g. holds ``VOC2007/``).
        iters (int, optional): Training iterations. The ``begin``/``end``
            and ``milestones`` of every scheduler (warm-up, decay) are
            scaled by ``iters / max_iters`` so the schedule keeps its shape.
        batch_size (int, optional): Images per training iteration.
        cfg_options (dict, optional): Further overrides (e.g. loader
            workers), merged before the above.
        val_interval (int, optional): Evaluate the test split every this
            many iterations while training (the learning curve; metrics are
            logged at their iteration). None: no validation.

    Returns:
        Config: The modified config (the loaders' ``data_root`` and a COCO
        test evaluator's ``ann_file`` under it point at ``data_root``); it
        tests once after training and checkpoints the last iteration
        only.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    data_root = data_root.rstrip('/') + '/'
    old_root = cfg.test_dataloader.dataset.get('data_root')
    for split in ('train', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    # a COCO evaluator reads its own copy of the annotation path
    evaluators = cfg.test_evaluator
    for evaluator in (evaluators if isinstance(evaluators, list) else
                      [evaluators]):
        ann_file = evaluator.get('ann_file')
        if old_root and ann_file and ann_file.startswith(old_root):
            evaluator.ann_file = data_root + ann_file[len(old_root):]
    if val_interval is None:
        # the benchmark tests once at the end; no validation while training
        cfg.val_dataloader = None
        cfg.val_evaluator = None
        cfg.val_cfg = None
    elif val_interval < 1:
        raise ValueError(f'val_interval must be positive, got {val_interval}')
    else:
        # the curve is measured on the split the final test reports
        cfg.val_dataloader = copy.deepcopy(cfg.test_dataloader)
        cfg.val_evaluator = copy.deepcopy(cfg.test_evaluator)
        cfg.val_cfg = dict(type='ValLoop')
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
            if 'milestones' in scheduler:
                scheduler['milestones'] = [
                    round(m * iters / old) for m in scheduler['milestones']
                ]
        cfg.train_cfg.max_iters = iters
        cfg.default_hooks.logger.interval = min(
            cfg.default_hooks.logger.interval, iters)
        cfg.log_processor.window_size = min(cfg.log_processor.window_size,
                                            iters)
    cfg.train_cfg.val_interval = val_interval or cfg.train_cfg.max_iters
    if val_interval is not None:
        # logged at the iteration, not the (single) epoch
        cfg.default_hooks.logger.log_metric_by_epoch = False
        cfg.default_hooks.checkpoint.save_best = None
    cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_iters
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    return cfg


# {name: [(iteration or step, value), ...]}
Curves = Dict[str, List[Tuple[int, float]]]


def _scalar_files(work_dir: str) -> List[str]:
    """Every ``scalars.json`` mmengine wrote under ``work_dir`` (one per
    run, in ``<timestamp>/vis_data/``)."""
    return sorted(
        osp.join(folder, 'scalars.json')
        for folder, _, files in os.walk(work_dir) if 'scalars.json' in files)


def _logged_records(work_dir: str, skip: Iterable[str] = ()):
    """Every record of :func:`_scalar_files`, except of those in
    ``skip``."""
    skip = set(skip)
    for path in _scalar_files(work_dir):
        if path not in skip:
            with open(path) as f:
                yield from (json.loads(line) for line in f)


def logged_losses(work_dir: str, skip: Iterable[str] = ()) -> Curves:
    """``{loss name: [(iteration, value), ...]}`` of every training loss
    (``loss`` and each ``loss_*``) mmengine logged under ``work_dir``,
    except in the ``scalars.json`` files of ``skip`` (earlier runs)."""
    curves: Curves = {}
    for record in _logged_records(work_dir, skip):
        if 'iter' not in record:
            continue
        for key, value in record.items():
            if key == 'loss' or key.startswith('loss_'):
                curves.setdefault(key, []).append((record['iter'], value))
    return {key: sorted(points) for key, points in sorted(curves.items())}


def logged_metrics(work_dir: str, skip: Iterable[str] = ()) -> Curves:
    """``{metric name: [(step, value), ...]}`` of every validation mmengine
    logged under ``work_dir``, except in the files of ``skip`` (its records
    without ``iter``; the step is the training iteration when the config's
    ``default_hooks.logger`` has ``log_metric_by_epoch=False``, otherwise the
    epoch)."""
    curves: Curves = {}
    for record in _logged_records(work_dir, skip):
        if 'iter' in record or 'step' not in record:
            continue
        for key, value in record.items():
            if key not in ('step', 'time', 'data_time'):
                curves.setdefault(key, []).append((record['step'], value))
    return {key: sorted(points) for key, points in sorted(curves.items())}


def run_learning_benchmark(config: str,
                           data_root: str = 'data/shapes/',
                           work_dir: str = 'work_dirs/learning',
                           iters: Optional[int] = None,
                           batch_size: Optional[int] = None,
                           data_spec: Optional[Dict] = None,
                           cfg_options: Optional[Dict] = None,
                           seed: Optional[int] = None,
                           threads: Optional[int] = None,
                           val_interval: Optional[int] = None) -> Dict:
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
        seed (int, optional): ``randomness.seed`` of the run (weights,
            data order, augmentation); the config's when None.
        threads (int, optional): ``torch.set_num_threads`` for the run
            (used when several runs share the machine).
        val_interval (int, optional): Also evaluate the test split every
            this many iterations while training (see :func:`scaled_config`).

    Returns:
        dict: ``config``, ``cfg_options``, ``seed``, ``iters``,
        ``batch_size``, ``losses``
        (``{name: (first, last)}`` logged values), ``curves`` (every logged
        loss term, ``{name: [(iteration, value), ...]}``), ``ap50`` (``{metric
        name: AP at IoU 0.5 in percent}``), ``coco_ap`` (a COCO evaluator's
        AP at IoU 0.5:0.95 in percent, ``{'coco/bbox_mAP': ..., ...}``;
        empty for VOC metrics), ``val_curves`` (``{metric: [(iteration,
        value), ...]}`` of the validations while training, in percent;
        empty without ``val_interval``) and ``minutes``.
    """
    import torch

    from vovdet.apis import test as test_api
    from vovdet.apis import train as train_api
    from vovdet.apis.demo import ensure_shapes_data

    start = time.time()
    if threads is not None:
        torch.set_num_threads(threads)
    ensure_shapes_data(data_root, **(data_spec or {}))
    cfg = scaled_config(config, data_root, iters, batch_size, cfg_options,
                        val_interval)
    if seed is not None:
        cfg.randomness = dict(seed=seed)
    os.makedirs(work_dir, exist_ok=True)
    # a work_dir used before (an interrupted or repeated run) keeps that
    # run's logs; the curves are this run's only
    earlier_logs = _scalar_files(work_dir)
    used = osp.join(work_dir, osp.basename(config))
    cfg.dump(used)
    train_api.main([used, '--work-dir', work_dir])
    max_iters = cfg.train_cfg.max_iters
    checkpoint = osp.join(work_dir, f'iter_{max_iters}.pth')
    metrics = test_api.main([used, checkpoint, '--work-dir', work_dir])
    curves = logged_losses(work_dir, earlier_logs)
    if 'loss' not in curves:
        raise RuntimeError(f'no training loss was logged under {work_dir}')
    # VOCMetric: '<prefix>/AP50'; CocoMetric: 'coco/{bbox,segm}_mAP_50'
    ap50 = {
        key: 100 * value
        for key, value in metrics.items()
        if key.endswith('AP50') or key.endswith('mAP_50')
    }
    # CocoMetric's primary figure, AP at IoU 0.5:0.95 ('coco/bbox_mAP')
    coco_ap = {
        key: 100 * value
        for key, value in metrics.items()
        if key.endswith(('bbox_mAP', 'segm_mAP'))
    }
    if not ap50:
        raise RuntimeError(
            f"the test evaluator of {config} reported no AP50 (got "
            f"{', '.join(metrics) or 'nothing'})")
    return dict(
        config=config,
        cfg_options=dict(cfg_options or {}),
        seed=cfg.get('randomness', {}).get('seed'),
        iters=max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        losses={key: (points[0][1], points[-1][1])
                for key, points in curves.items()},
        curves=curves,
        ap50=ap50,
        coco_ap=coco_ap,
        val_curves={
            key: [(step, 100 * value) for step, value in points]
            for key, points in logged_metrics(work_dir, earlier_logs).items()
            if key.endswith(('AP50', 'mAP_50', 'bbox_mAP', 'segm_mAP'))
        },
        minutes=(time.time() - start) / 60)


def _run_one(kwargs: Dict) -> Dict:
    """:func:`run_learning_benchmark` with keyword arguments (a picklable
    entry point for the worker processes of :func:`run_many`)."""
    return run_learning_benchmark(**kwargs)


def run_many(configs: Sequence[str],
             seeds: Sequence[Optional[int]] = (None, ),
             data_root: str = 'data/shapes/',
             work_dir: str = 'work_dirs/learning',
             iters: Optional[int] = None,
             batch_size: Optional[int] = None,
             cfg_options: Optional[Dict] = None,
             jobs: int = 1,
             data_spec: Optional[Dict] = None,
             val_interval: Optional[int] = None) -> List[Dict]:
    """Train every config with every seed; ``jobs`` runs at a time.

    Each run trains in ``work_dir/<config name>/seed<seed>``. With
    ``jobs > 1`` the runs go to that many spawned worker processes, each
    with ``cpu_count // jobs`` torch threads, so they share the cores
    instead of competing for them; the shapes data set is generated once
    beforehand. The other arguments are :func:`run_learning_benchmark`'s.

    Returns:
        list[dict]: The :func:`run_learning_benchmark` results, in the
        order config-major, seed-minor.
    """
    from vovdet.apis.demo import ensure_shapes_data

    if jobs < 1:
        raise ValueError(f'jobs must be at least 1, got {jobs}')
    runs = []
    for config in configs:
        name = osp.splitext(osp.basename(config))[0]
        for seed in seeds:
            folder = name if seed is None else osp.join(name, f'seed{seed}')
            runs.append(
                dict(config=config, data_root=data_root,
                     work_dir=osp.join(work_dir, folder), iters=iters,
                     batch_size=batch_size, cfg_options=cfg_options,
                     seed=seed, data_spec=data_spec,
                     val_interval=val_interval))
    if jobs == 1:
        return [_run_one(run) for run in runs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ensure_shapes_data(data_root, **(data_spec or {}))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    for run in runs:
        run['threads'] = threads
    # not multiprocessing.Pool: its daemonic workers cannot start the data
    # loader's worker processes
    with ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context('spawn')) as pool:
        return list(pool.map(_run_one, runs))


def run_label(result: Dict) -> str:
    """The name a run is grouped and shown under: the config's file name
    and its ``cfg_options``, if any (``a.py lr=0.005``), so that variants of
    one config are told apart."""
    options = result.get('cfg_options') or {}
    return ' '.join([osp.basename(result['config'])] +
                    [f'{key}={value}' for key, value in options.items()])


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.
    var = sum((v - mean)**2 for v in values) / (len(values) - 1)
    return mean, var**0.5


def summarize(results: Sequence[Dict]) -> List[Dict]:
    """Group runs by config: every AP50 and the last total loss as mean and
    standard deviation over the seeds.

    Returns:
        list[dict]: Per config (and ``cfg_options``), in first-seen order:
        ``config`` (:func:`run_label`), ``name`` (the config's file name),
        ``cfg_options``, ``seeds``,
        ``iters``, ``batch_size``, ``ap50`` (``{metric: (mean, std)}``),
        ``coco_ap`` (the same for COCO's AP at IoU 0.5:0.95, if reported),
        ``per_seed`` (``{metric: [values]}``), ``last_loss`` (mean, std) and
        ``minutes`` (mean).
    """
    groups: Dict[str, List[Dict]] = {}
    for r in results:
        groups.setdefault(run_label(r), []).append(r)
    rows = []
    for label, runs in groups.items():
        metrics = list(dict.fromkeys(k for r in runs for k in r['ap50']))
        coco = list(dict.fromkeys(
            k for r in runs for k in r.get('coco_ap', {})))
        rows.append(
            dict(
                config=label,
                name=osp.basename(runs[0]['config']),
                cfg_options=runs[0].get('cfg_options') or {},
                seeds=[r.get('seed') for r in runs],
                iters=runs[0]['iters'],
                batch_size=runs[0]['batch_size'],
                ap50={
                    k: mean_std([r['ap50'][k] for r in runs])
                    for k in metrics
                },
                coco_ap={
                    k: mean_std([r['coco_ap'][k] for r in runs])
                    for k in coco
                },
                per_seed={k: [r['ap50'][k] for r in runs]
                          for k in metrics},
                last_loss=mean_std([r['losses']['loss'][1] for r in runs]),
                minutes=sum(r['minutes'] for r in runs) / len(runs)))
    return rows


def format_summary(rows: Sequence[Dict]) -> str:
    """A markdown table of :func:`summarize`: one row per config, every AP50
    as mean ± std over the seeds (with the per-seed values)."""
    names = list(dict.fromkeys(k for r in rows for k in r['ap50']))
    coco = list(dict.fromkeys(k for r in rows for k in r.get('coco_ap', {})))
    lines = [
        '| config | seeds | iterations x images | ' +
        ' | '.join(f'{k} (mean ± std)' for k in names + coco) +
        ' | per-seed ' + names[0] + ' | last loss | minutes / run |',
        '|---|---|---|' + '---|' * len(names + coco) + '---|---|---|'
    ]
    for r in rows:
        values = dict(r['ap50'], **r.get('coco_ap', {}))
        aps = ' | '.join(
            '{:.1f} ± {:.1f}'.format(*values[k]) if k in values else '-'
            for k in names + coco)
        per_seed = ', '.join(f'{v:.1f}' for v in r['per_seed'].get(
            names[0], []))
        seeds = ', '.join(str(s) for s in r['seeds'])
        lines.append(
            f"| {r['config']} | {seeds} | {r['iters']} x "
            f"{r['batch_size']} | {aps} | {per_seed} | "
            '{:.2f} ± {:.2f}'.format(*r['last_loss']) +
            f" | {r['minutes']:.1f} |")
    return '\n'.join(lines)


def plot_curves(results: Sequence[Dict],
                path: str,
                title: str = 'Training loss',
                keys: Sequence[str] = ('loss', ),
                references: Optional[Dict[str, float]] = None,
                field: str = 'curves',
                ylabel: Optional[str] = None) -> None:
    """Plot each config's logged losses against the iteration: for every
    loss name in ``keys`` the mean over the config's seeds as a line and the
    seeds' range shaded. ``references`` draws labelled horizontal lines
    (e.g. the loss of a constant predictor). ``field='val_curves'`` plots
    the validation metrics instead, on a linear axis labelled ``ylabel``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups: Dict[str, List[Dict]] = {}
    for r in results:
        groups.setdefault(run_label(r).replace('.py', ''), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in groups.items():
        for key in keys:
            series = [r.get(field, {}).get(key, []) for r in runs]
            common = sorted(set.intersection(*[{i for i, _ in c}
                                               for c in series]))
            if not common:
                continue
            values = [[dict(c)[i] for c in series] for i in common]
            mean = [sum(v) / len(v) for v in values]
            name = label if len(keys) == 1 else f'{label}: {key}'
            ax.plot(common, mean, label=f'{name} ({len(runs)} seeds)')
            ax.fill_between(common, [min(v) for v in values],
                            [max(v) for v in values], alpha=0.2)
    for text, value in (references or {}).items():
        ax.axhline(value, color='grey', linestyle=':', linewidth=1)
        ax.annotate(text, (0, value), textcoords='offset points',
                    xytext=(4, 2), fontsize=7, color='dimgrey')
    ax.set_xlabel('iteration')
    if field == 'curves':
        ax.set_ylabel(ylabel or ('total training loss' if keys == ('loss', )
                                 else 'training loss'))
        ax.set_yscale('log')
    else:
        ax.set_ylabel(ylabel or ', '.join(keys))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short_label(row: Dict) -> str:
    """A :func:`summarize` row as a bar label that fits: the config's name
    without ``.py`` and each option's last two key parts (``b.c=1``)."""
    return ' '.join([osp.splitext(row['name'])[0]] + [
        '.'.join(key.split('.')[-2:]) + f'={value}'
        for key, value in row['cfg_options'].items()])


def plot_ap50(rows: Sequence[Dict], path: str,
              metric: Optional[str] = None,
              title: str = 'Held-out AP50') -> None:
    """A horizontal bar per :func:`summarize` row: the mean AP50 over the
    seeds with the sample standard deviation as an error bar and each seed
    as a dot. ``metric`` is the AP50 key to show (default: the first)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    metric = metric or next(iter(rows[0]['ap50']))
    rows = [r for r in rows if metric in r['ap50']]
    labels = [_short_label(r) for r in rows]
    # drop the file-name prefix every row shares ('vovnet19slim_'); a label
    # with several options goes on several lines, so none is cut off
    common = osp.commonprefix(labels)
    common = common[:common.rfind('_') + 1]
    labels = [
        textwrap.fill(label[len(common):], width=48,
                      break_long_words=False) for label in labels
    ]
    lines = max(label.count('\n') + 1 for label in labels)
    fig, ax = plt.subplots(
        figsize=(11, (0.25 + 0.15 * lines) * len(rows) + 1.3))
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        mean, std = r['ap50'][metric]
        seeds = r['per_seed'][metric]
        ax.barh(y, mean, xerr=std, color='#8fb3d9', capsize=3)
        ax.plot(seeds, [y] * len(seeds), 'k.', markersize=4)
        ax.annotate(f'{mean:.1f} ± {std:.1f} ({len(seeds)} seed'
                    f"{'s' if len(seeds) > 1 else ''})",
                    (max([mean + std] + seeds), y), xytext=(4, -3),
                    textcoords='offset points', fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=7)
    # room right of the longest bar for its 'mean ± std (n seeds)'
    ax.set_xlim(0, 1.35 * max(max(r['per_seed'][metric]) for r in rows))
    ax.set_xlabel(f'{metric} (bar: mean, whisker: std over seeds, dots: '
                  'seeds)')
    ax.set_title(title)
    ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_metric(results: Sequence[Dict]) -> Optional[str]:
    """The validation metric a learning curve shows: COCO's
    ``coco/bbox_mAP`` when logged, else the first AP50; None when no run
    validated while training."""
    keys = list(dict.fromkeys(k for r in results
                              for k in r.get('val_curves', {})))
    if not keys:
        return None
    if 'coco/bbox_mAP' in keys:
        return 'coco/bbox_mAP'
    return next((k for k in keys if k.endswith(('AP50', 'mAP_50'))), keys[0])


def format_val_curves(results: Sequence[Dict], metric: str) -> str:
    """A markdown table of the learning curve: per config (and options) the
    mean ± std over its seeds of ``metric`` at every validated iteration
    all its seeds share."""
    groups: Dict[str, List[Dict]] = {}
    for r in results:
        groups.setdefault(run_label(r), []).append(r)
    rows = {}
    for label, runs in groups.items():
        series = [dict(r.get('val_curves', {}).get(metric, [])) for r in runs]
        common = sorted(set.intersection(*[set(c) for c in series]))
        rows[label] = {
            step: (mean_std([c[step] for c in series]), len(series))
            for step in common
        }
    steps = sorted({s for row in rows.values() for s in row})
    lines = [
        f'| {metric} at iteration | ' + ' | '.join(str(s) for s in steps) +
        ' |', '|---|' + '---|' * len(steps)
    ]
    for label, row in rows.items():
        cells = ' | '.join(
            '{:.1f} ± {:.1f}'.format(*row[s][0]) if s in row else '-'
            for s in steps)
        seeds = max((n for _, n in row.values()), default=0)
        lines.append(f"| {label} ({seeds} seed{'s' if seeds != 1 else ''})"
                     f' | {cells} |')
    return '\n'.join(lines)


def write_report(results: Sequence[Dict], out_dir: str,
                 name: str = 'learning') -> Dict[str, str]:
    """Write ``<name>.json`` (every run), ``<name>.md`` (the mean ± std
    table and the per-run losses), ``<name>.png`` (the loss curves) and
    ``<name>_ap50.png`` (:func:`plot_ap50`) under ``out_dir``; runs that
    validated while training add their learning curve, a table in the
    ``.md`` and ``<name>_curve.png``. Return the paths (keys ``json``,
    ``md``, ``png``, ``ap50`` and ``curve``)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: osp.join(out_dir, f'{name}.{ext}')
             for ext in ('json', 'md', 'png')}
    paths['ap50'] = osp.join(out_dir, f'{name}_ap50.png')
    with open(paths['json'], 'w') as f:
        json.dump(list(results), f, indent=1)
    rows = summarize(results)
    metric = curve_metric(results)
    with open(paths['md'], 'w') as f:
        f.write(format_summary(rows) + '\n\n')
        if metric:
            f.write(format_val_curves(results, metric) + '\n\n')
        f.write(format_results(results) + '\n')
    plot_curves(results, paths['png'])
    plot_ap50(rows, paths['ap50'])
    if metric:
        paths['curve'] = osp.join(out_dir, f'{name}_curve.png')
        plot_curves(results, paths['curve'], title='Held-out learning curve',
                    keys=(metric, ), field='val_curves',
                    ylabel=f'{metric} (%)')
    return paths


def format_results(results: Sequence[Dict]) -> str:
    """A markdown table of :func:`run_learning_benchmark` results: one row
    per run with every AP50, then each run's loss terms, first -> last."""
    names = list(dict.fromkeys(
        k for r in results for k in list(r['ap50']) + list(
            r.get('coco_ap', {}))))
    lines = [
        '| config | seed | iterations x images | ' +
        ' | '.join(names) + ' | minutes |',
        '|---|---|---|' + '---|' * len(names) + '---|'
    ]
    for r in results:
        values = dict(r['ap50'], **r.get('coco_ap', {}))
        aps = ' | '.join(
            f'{values[k]:.1f}' if k in values else '-' for k in names)
        seed = '-' if r.get('seed') is None else r['seed']
        lines.append(f"| {run_label(r)} | {seed} | "
                     f"{r['iters']} x {r['batch_size']} | {aps} | "
                     f"{r['minutes']:.1f} |")
    lines.append('')
    for r in results:
        losses = ', '.join(f'{key} {first:.3f} -> {last:.3f}'
                           for key, (first, last) in r['losses'].items())
        lines.append(f"{run_label(r)} (seed "
                     f"{r.get('seed')}) logged losses, first -> last: "
                     f'{losses}')
    return '\n'.join(lines)


def load_results(paths: Sequence[str]) -> List[Dict]:
    """The runs of earlier ``--out`` JSON files, in order.

    Raises:
        ValueError: A file that cannot be read or is not JSON; the message
            starts with its path.
    """
    results: List[Dict] = []
    for path in paths:
        try:
            with open(path) as f:
                results.extend(json.load(f))
        except (OSError, ValueError) as err:
            raise ValueError(
                f'{path}: {err}; give the .json files that '
                'tools/analysis/learning_benchmark.py --out wrote') from err
    return results


def main(argv: Optional[List[str]] = None,
         default_config: Optional[str] = None,
         work_dir: str = 'work_dirs/learning') -> List[Dict]:
    """Run the benchmark for every ``--config`` and ``--seeds`` and print
    the tables.

    Args:
        argv (list[str], optional): Command-line arguments.
        default_config (str, optional): ``--config`` when not given; the
            option is required when None.
        work_dir (str): The default ``--work-dir``; each config trains in
            a sub-directory named after it (and ``seed<N>`` below it when
            seeds are given).
    """
    parser = argparse.ArgumentParser(
        description='Train shapes configs from scratch on a CPU, several '
        'seeds each, and report their held-out AP50 (mean ± std) and loss '
        'curves')
    parser.add_argument(
        '--config', nargs='+',
        default=None if default_config is None else [default_config],
        help='shapes configs to train' +
        ('' if default_config is None else f' (default {default_config})'))
    parser.add_argument(
        '--from-json', nargs='+', metavar='JSON',
        help='train nothing: merge the runs of earlier --out JSON files '
        '(e.g. seeds run as separate processes) into one report')
    parser.add_argument(
        '--seeds', type=int, nargs='+',
        help="seeds to train each config with (default: the config's)")
    parser.add_argument(
        '--jobs', type=int, default=1,
        help='runs at a time, each in its own process with its share of '
        'the cores (default 1)')
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default=work_dir)
    parser.add_argument(
        '--out',
        help='write <name>.json, .md (mean ± std table) and .png (loss '
        'curves) into this folder')
    parser.add_argument(
        '--name', default='learning',
        help='file name stem of the --out files (default learning)')
    parser.add_argument(
        '--iters', type=int,
        help="training iterations (default: the config's schedule)")
    parser.add_argument(
        '--batch-size', type=int,
        help="images per iteration (default: the config's)")
    parser.add_argument(
        '--val-interval', type=int,
        help='also evaluate the test split every N training iterations: '
        'the learning curve (<name>_curve.png and a table; default: only '
        'after training)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='further config overrides, e.g. train_dataloader.num_workers=2')
    args = parser.parse_args(argv)
    if args.from_json:
        try:
            results = load_results(args.from_json)
        except ValueError as err:
            parser.error(f'--from-json {err}')
    elif args.config:
        results = run_many(args.config, args.seeds or [None], args.data_root,
                           args.work_dir, args.iters, args.batch_size,
                           args.cfg_options, args.jobs,
                           val_interval=args.val_interval)
    else:
        parser.error('give --config (configs to train) or --from-json '
                     '(earlier results to merge)')
    print(format_summary(summarize(results)), flush=True)
    print()
    print(format_results(results), flush=True)
    if args.out:
        paths = write_report(results, args.out, args.name)
        print('\nwrote ' + ', '.join(paths.values()), flush=True)
    return results
