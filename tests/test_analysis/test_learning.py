"""The learning benchmark: schedule scaling, loss-log reading, and end-to-end
runs of a couple of iterations for RefineDet and DSOD on tiny shapes sets."""
import glob
import json
import math
import os.path as osp

import pytest
from mmengine.config import Config

from tests.helpers import tiny_demo_data
from vovdet.analysis.learning import (format_results, format_summary,
                                      logged_losses, logged_metrics, main,
                                      plot_ap50, plot_curves, run_label,
                                      run_learning_benchmark, run_many,
                                      scaled_config, summarize, write_report)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REFINEDET = osp.join(ROOT, 'configs', 'vovnet19slim_refinedet192_shapes.py')
DSOD = osp.join(ROOT, 'configs', 'vovnet27slim_dsod160_shapes.py')
# the end-to-end runs: a tiny shapes set, loaders in the test process
TINY_SPEC = dict(num_train=8, num_val=4, image_size=96, max_objects=3,
                 min_radius=10, max_radius=30, seed=0)
TINY_LOADERS = {f'{split}_dataloader.{key}': value
                for split in ('train', 'test')
                for key, value in (('num_workers', 0),
                                   ('persistent_workers', False))}


def test_scaled_config_scales_the_schedule_and_skips_validation():
    cfg = scaled_config(REFINEDET, '/somewhere/shapes', iters=150,
                        batch_size=2,
                        cfg_options={'train_dataloader.num_workers': 0})
    assert cfg.train_cfg.max_iters == 150
    warmup, cosine = cfg.param_scheduler
    # 100 warm-up iterations of 1500 -> 10 of 150
    assert (warmup.begin, warmup.end) == (0, 10)
    assert (cosine.begin, cosine.end) == (10, 150)
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    assert cfg.default_hooks.checkpoint.interval == 150
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.train_dataloader.dataset.data_root == '/somewhere/shapes/'
    assert cfg.test_dataloader.dataset.data_root == '/somewhere/shapes/'
    with pytest.raises(ValueError, match='iters must be positive'):
        scaled_config(REFINEDET, '/somewhere/shapes', iters=0)
    # step schedules keep their shape: x0.1 at 2/3 and 5/6 of the run
    solver = scaled_config(
        osp.join(ROOT, 'configs',
                 'vovnet19slim_refinedet192_shapes_finetune_solver.py'),
        '/somewhere/shapes', iters=150)
    [steps] = solver.param_scheduler
    assert (steps.end, steps.milestones) == (150, [100, 125])
    assert solver.optim_wrapper.optimizer.lr == pytest.approx(2.5e-4)
    # without iters the config's own schedule is kept, checkpointed once
    cfg = scaled_config(DSOD, '/somewhere/shapes')
    assert cfg.train_cfg.max_iters == 1200
    assert cfg.default_hooks.checkpoint.interval == 1200


def test_logged_losses_reads_every_loss_term(tmp_path):
    run = tmp_path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    records = [
        dict(iter=2, loss=2.0, loss_cls=1.5, lr=0.1),
        dict(iter=1, loss=3.0, loss_cls=2.0, lr=0.1),
        dict(coco_bbox_mAP=0.1, step=2),  # a validation record: ignored
    ]
    (run / 'scalars.json').write_text(
        '\n'.join(json.dumps(r) for r in records))
    assert logged_losses(str(tmp_path)) == {
        'loss': [(1, 3.0), (2, 2.0)],
        'loss_cls': [(1, 2.0), (2, 1.5)]
    }
    # the validation record, at its step (the iteration when the logger has
    # log_metric_by_epoch=False); its timings are not metrics
    (run / 'scalars.json').write_text('\n'.join(
        json.dumps(r) for r in records + [
            dict(coco_bbox_mAP=0.3, time=0.5, data_time=0.1, step=4)]))
    assert logged_metrics(str(tmp_path)) == {
        'coco_bbox_mAP': [(2, 0.1), (4, 0.3)]}


def check_result(result, loss_keys):
    assert result['iters'] == 2 and result['batch_size'] == 2
    assert set(result['losses']) == set(loss_keys)
    for first, last in result['losses'].values():
        assert math.isfinite(first) and math.isfinite(last)
    assert result['ap50']
    for value in result['ap50'].values():
        assert 0 <= value <= 100


def test_refinedet_benchmark_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    tiny_demo_data(monkeypatch)
    data_root = str(tmp_path / 'shapes')
    work = tmp_path / 'work'
    [result] = main(['--data-root', data_root, '--work-dir', str(work),
                     '--iters', '2', '--batch-size', '2'],
                    default_config=REFINEDET)
    # the benchmark generated the data set itself
    assert osp.isfile(osp.join(data_root, 'VOC2007', 'ImageSets', 'Main',
                               'test.txt'))
    check_result(result, {'loss', 'loss_arm_cls', 'loss_arm_bbox',
                          'loss_odm_cls', 'loss_odm_bbox'})
    # both VOCMetrics of voc07_ssd320.py: 11-point and area AP
    assert set(result['ap50']) == {'voc_11points/AP50', 'voc_area/AP50'}
    run = work / 'vovnet19slim_refinedet192_shapes'
    assert (run / 'iter_2.pth').is_file()
    table = capsys.readouterr().out
    assert '| voc_11points/AP50 | voc_area/AP50 |' in table
    assert '| vovnet19slim_refinedet192_shapes.py | 0 | 2 x 2 |' in table
    assert 'loss_odm_cls' in table


def test_dsod_benchmark_runs_end_to_end(tmp_path, shapes_root):
    # the conftest data set, recognised by its spec and not regenerated
    spec, loaders = TINY_SPEC, TINY_LOADERS
    work = str(tmp_path / 'work')
    result = run_learning_benchmark(
        DSOD, shapes_root, work, iters=2, batch_size=2, data_spec=spec,
        cfg_options=loaders)
    check_result(result, {'loss', 'loss_cls', 'loss_bbox'})
    assert set(result['ap50']) == {'pascal_voc/AP50'}
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    # run again in the same work_dir (an interrupted run restarted): the
    # earlier run's log stays there, the curves are the new run's only
    again = run_learning_benchmark(
        DSOD, shapes_root, work, iters=2, batch_size=2, data_spec=spec,
        cfg_options=loaders)
    logs = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    assert len(logs) == 2
    for name, points in again['curves'].items():
        assert [i for i, _ in points] == [i for i, _ in result['curves'][name]]
    used = Config.fromfile(osp.join(work, osp.basename(DSOD)))
    # the schedule is scaled to 2 iterations: warm-up 100/1200 -> 0 .. 1
    assert used.param_scheduler[0].end == 1
    assert used.param_scheduler[1].end == 2
    assert used.train_dataloader.num_workers == 0
    table = format_results([result])
    # the run is labelled with its options
    assert result['cfg_options'] == loaders
    assert (f'| vovnet27slim_dsod160_shapes.py '
            f'{" ".join(f"{k}={v}" for k, v in loaders.items())} | 0 | 2 x 2 | '
            in table)
    assert 'loss_bbox' in table


def test_main_requires_a_config_without_a_default():
    with pytest.raises(SystemExit):
        main([])


def fake_run(config, seed, ap, loss):
    return dict(config=config, seed=seed, iters=10, batch_size=2,
                losses={'loss': (9.0, loss)},
                curves={'loss': [(5, loss + 1), (10, loss)]},
                ap50={'voc_11points/AP50': ap}, minutes=1.0)


def test_summary_gives_mean_and_sample_std_per_config(tmp_path):
    runs = [fake_run('a.py', 0, 40., 2.), fake_run('a.py', 1, 50., 3.),
            fake_run('a.py', 2, 60., 4.), fake_run('b.py', 0, 70., 1.)]
    rows = summarize(runs)
    assert [r['config'] for r in rows] == ['a.py', 'b.py']
    mean, std = rows[0]['ap50']['voc_11points/AP50']
    assert mean == pytest.approx(50.) and std == pytest.approx(10.)
    assert rows[0]['per_seed']['voc_11points/AP50'] == [40., 50., 60.]
    assert rows[0]['seeds'] == [0, 1, 2]
    assert rows[0]['last_loss'] == pytest.approx((3., 1.))
    assert rows[1]['ap50']['voc_11points/AP50'] == (70., 0.)
    table = format_summary(rows)
    assert '| a.py | 0, 1, 2 | 10 x 2 | 50.0 ± 10.0 | 40.0, 50.0, 60.0 |' \
        in table
    paths = write_report(runs, str(tmp_path / 'out'), 'parity')
    assert json.loads(open(paths['json']).read())[3]['config'] == 'b.py'
    assert '50.0 ± 10.0' in open(paths['md']).read()
    with open(paths['png'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    # any logged loss term, with reference lines
    for r in runs:
        r['curves']['loss_cls'] = [(5, 1.0), (10, 0.5)]
    path = tmp_path / 'cls.png'
    plot_curves(runs, str(path), keys=('loss_cls', ),
                references={'constant guess': 0.7})
    assert path.read_bytes()[:4] == b'\x89PNG'


def test_variants_of_one_config_are_told_apart_and_merged(tmp_path, capsys):
    # runs of one config with different --cfg-options are separate rows
    runs = [fake_run('configs/a.py', 0, 40., 2.),
            dict(fake_run('configs/a.py', 0, 60., 2.),
                 cfg_options={'optim_wrapper.optimizer.lr': 0.005}),
            dict(fake_run('configs/a.py', 1, 70., 2.),
                 cfg_options={'optim_wrapper.optimizer.lr': 0.005})]
    assert run_label(runs[1]) == 'a.py optim_wrapper.optimizer.lr=0.005'
    rows = summarize(runs)
    assert [r['config'] for r in rows] == [
        'a.py', 'a.py optim_wrapper.optimizer.lr=0.005']
    assert rows[1]['ap50']['voc_11points/AP50'][0] == pytest.approx(65.)
    assert rows[1]['name'] == 'a.py'
    assert rows[1]['cfg_options'] == {'optim_wrapper.optimizer.lr': 0.005}
    # an option value with spaces (a list) still labels and plots
    listed = dict(fake_run('configs/a.py', 0, 50., 2.),
                  cfg_options={'model.neck.in_channels': [8, 16]})
    plot_ap50(summarize([listed]), str(tmp_path / 'listed.png'))
    assert (tmp_path / 'listed.png').read_bytes()[:4] == b'\x89PNG'
    # --from-json merges runs written by separate processes, trains nothing
    paths = []
    for i, run in enumerate(runs):
        paths.append(str(tmp_path / f'run{i}.json'))
        with open(paths[-1], 'w') as f:
            json.dump([run], f)
    with pytest.raises(SystemExit):
        main(['--from-json', str(tmp_path / 'missing.json')])
    assert '--from-json' in capsys.readouterr().err
    merged = main(['--from-json', *paths, '--out', str(tmp_path / 'out'),
                   '--name', 'merged'])
    assert [(run_label(r), r['ap50']) for r in merged] == [
        (run_label(r), r['ap50']) for r in runs]
    table = (tmp_path / 'out' / 'merged.md').read_text()
    assert '| a.py optim_wrapper.optimizer.lr=0.005 | 0, 1 |' in table
    for png in ('merged.png', 'merged_ap50.png'):
        assert (tmp_path / 'out' / png).read_bytes()[:4] == b'\x89PNG'


def test_seeds_run_in_parallel_processes(tmp_path, shapes_root):
    spec, options = TINY_SPEC, TINY_LOADERS
    results = run_many([DSOD], seeds=[3, 4], data_root=shapes_root,
                       work_dir=str(tmp_path), iters=1, batch_size=2,
                       cfg_options=options, jobs=2, data_spec=spec)
    assert [r['seed'] for r in results] == [3, 4]
    for seed in (3, 4):
        run = tmp_path / 'vovnet27slim_dsod160_shapes' / f'seed{seed}'
        assert (run / 'iter_1.pth').is_file()
        used = Config.fromfile(str(run / osp.basename(DSOD)))
        assert used.randomness.seed == seed
    # the seed changes the initial weights, hence the first logged loss
    assert results[0]['losses']['loss'][0] != results[1]['losses']['loss'][0]
    with pytest.raises(ValueError, match='jobs must be at least 1'):
        run_many([DSOD], jobs=0)


def test_maskrcnn_peers_report_coco_ap50(tmp_path, shapes_root):
    # the Mask R-CNN parity pair: the demo's VoVNet and mmdet's ResNet-18
    spec, options = TINY_SPEC, TINY_LOADERS
    config = osp.join(ROOT, 'configs', 'resnet18_maskrcnn_shapes.py')
    result = run_learning_benchmark(
        config, shapes_root, str(tmp_path), iters=1, batch_size=2,
        data_spec=spec, cfg_options=options)
    assert set(result['ap50']) == {'coco/bbox_mAP_50', 'coco/segm_mAP_50'}
    # and COCO's primary AP (IoU 0.5:0.95), which the neck ablation compares
    assert set(result['coco_ap']) == {'coco/bbox_mAP', 'coco/segm_mAP'}
    assert all(0 <= v <= 100 for v in result['coco_ap'].values())
    table = format_summary(summarize([result]))
    assert 'coco/bbox_mAP (mean ± std)' in table.splitlines()[0]
    used = Config.fromfile(osp.join(str(tmp_path),
                                    'resnet18_maskrcnn_shapes.py'))
    demo = Config.fromfile(osp.join(ROOT, 'configs',
                                    'vovnet19slim_maskrcnn_shapes.py'))
    assert used.model.backbone.type == 'ResNet'
    assert used.model.backbone.depth == 18
    assert used.model.backbone.norm_cfg == demo.model.backbone.norm_cfg
    assert used.model.roi_head == demo.model.roi_head


def test_validation_while_training_gives_the_learning_curve(
        tmp_path, shapes_root):
    config = osp.join(ROOT, 'configs',
                      'vovnet19slim_osafpn_maskrcnn_shapes_ablation.py')
    cfg = scaled_config(config, '/somewhere/shapes', iters=10,
                        val_interval=5)
    assert cfg.train_cfg.val_interval == 5
    assert cfg.val_cfg.type == 'ValLoop'
    # the curve is measured on the split the final test reports
    assert cfg.val_dataloader == cfg.test_dataloader
    assert cfg.val_evaluator == cfg.test_evaluator
    assert cfg.default_hooks.logger.log_metric_by_epoch is False
    with pytest.raises(ValueError, match='val_interval must be positive'):
        scaled_config(config, '/somewhere/shapes', val_interval=0)

    spec, options = TINY_SPEC, TINY_LOADERS
    result = run_learning_benchmark(
        config, shapes_root, str(tmp_path / 'run'), iters=2, batch_size=2,
        data_spec=spec, cfg_options=options, val_interval=1)
    curve = result['val_curves']['coco/bbox_mAP']
    assert [step for step, _ in curve] == [1, 2]
    # the last validation is the final checkpoint on the same images
    assert curve[-1][1] == pytest.approx(result['coco_ap']['coco/bbox_mAP'])
    assert set(result['val_curves']) >= {'coco/bbox_mAP_50', 'coco/segm_mAP'}

    paths = write_report([result], str(tmp_path / 'out'), 'necks')
    assert osp.isfile(paths['curve'])
    table = open(paths['md']).read()
    assert '| coco/bbox_mAP at iteration | 1 | 2 |' in table
    assert (f'| {run_label(result)} (1 seed) | '
            f'{curve[0][1]:.1f} ± 0.0 | {curve[1][1]:.1f} ± 0.0 |') in table
    # runs without validation have no curve to draw
    result['val_curves'] = {}
    assert 'curve' not in write_report([result], str(tmp_path / 'out2'))
