"""The neck benchmark (counts, inference form, side-by-side paired timing,
CLI), the cost behind OSA-FPN's defaults, and the shapes ablation runner."""
import glob
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import vovdet  # noqa: F401
from tests.helpers import shrink_loaders
from vovdet.analysis import get_complexity
from vovdet.analysis.neck_ablation import (ABLATION_CONFIGS,
                                           format_ablation_table,
                                           run_ablation, train_command)
from vovdet.analysis.neck_benchmark import (benchmark_necks, count_neck,
                                            format_neck_table, neck_configs,
                                            random_features,
                                            sweep_osa_settings, time_necks,
                                            vovnet_feature_shapes)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
V39_800 = [(256, 200, 336), (512, 100, 168), (768, 50, 84), (1024, 25, 42)]
GN = dict(type='GN', num_groups=32, requires_grad=True)


def test_feature_shapes_are_vovnet39_outputs_of_the_padded_image():
    assert vovnet_feature_shapes('V-39', (800, 1333)) == V39_800
    # the real backbone on a padded 70x100 image (-> 96x128)
    register_all_modules()
    backbone = MODELS.build(dict(type='VoVNet', arch='V-39')).eval()
    with torch.no_grad():
        outs = backbone(torch.rand(1, 3, 96, 128))
    assert [tuple(o.shape[1:]) for o in outs] == \
        vovnet_feature_shapes('V-39', (70, 100))
    with pytest.raises(ValueError, match='multiple of 32'):
        vovnet_feature_shapes('V-39', (800, 1333), pad_size_divisor=16)
    with pytest.raises(ValueError, match="unknown VoVNet arch 'V-40'"):
        vovnet_feature_shapes('V-40')


def test_meta_count_equals_a_real_forward():
    shapes = [(32, 16, 24), (64, 8, 12), (96, 4, 6), (128, 2, 3)]
    for cfg in neck_configs([s[0] for s in shapes], 32, 5,
                            dict(type='GN', num_groups=8)).values():
        meta = count_neck(cfg, shapes)
        real = get_complexity(MODELS.build(cfg), random_features(shapes))
        assert (meta.params, meta.flops, meta.mac) == \
            (real.params, real.flops, real.mac)


def fpn_flops(shapes, out):
    # lateral 1x1 and output 3x3 on every level; the max-pooled P6 is free
    return sum(h * w * (c * out + 9 * out * out) for c, h, w in shapes)


def osafpn_flops(shapes, out, mid, m, n):
    # per level: the lateral 1x1 to 2 * mid; the top-down 1x1 of the coarser
    # output at the coarser level's resolution; the first 3x3 on the mid
    # non-bypassed channels, n - 1 more 3x3s of m, one 1x1 aggregation
    e = 2 * mid
    total = 0
    for i, (c, h, w) in enumerate(shapes):
        total += h * w * (c * e + 9 * mid * m + (n - 1) * 9 * m * m +
                          (e + n * m) * out)
        if i > 0:
            total += h * w * out * e
    return total


def test_default_costs_at_800x1333_against_closed_forms():
    """The counts behind the defaults' cost (docs/necks.md)."""
    rows = {row.name: row for row in benchmark_necks(
        neck_configs([256, 512, 768, 1024], norm_cfg=GN), V39_800,
        measure_latency=False)}
    fpn, osa = rows['FPN'], rows['OSA-FPN']
    pafpn, osapafpn = rows['PAFPN'], rows['OSA-PAFPN']
    assert fpn.flops == fpn_flops(V39_800, 256) == 60_348_825_600
    # expand_ratio 0.375: mid = module_channels = 96
    assert osa.flops == osafpn_flops(V39_800, 256, 96, 96, 2) == \
        30_443_212_800
    assert fpn.params == 3_018_752 and osa.params == 1_702_016
    # OSA-PAFPN's bottom-up path is PAFPN's (bottom_up='pan'): both add the
    # same stride-2 3x3 and 3x3 on every level above the finest
    assert osapafpn.flops - osa.flops == pafpn.flops - fpn.flops == sum(
        2 * 9 * 256 * 256 * h * w for _, h, w in V39_800[1:])
    # the claim of docs/necks.md: the defaults cost fewer multiply-adds
    # than mmdet's necks (their latency is measured, not asserted)
    assert osa.reference == 'FPN' and osapafpn.reference == 'PAFPN'
    assert osa.flops_ratio < 0.51 and osapafpn.flops_ratio < 0.66
    assert osa.flops_ratio == osa.flops / fpn.flops
    # ... and pay for it in memory traffic per multiply-add
    assert osa.mac_per_flop_ratio > 2 and osapafpn.mac_per_flop_ratio > 2


def test_inference_form_counts_fold_the_repvgg_layers():
    configs = neck_configs([256, 512, 768, 1024], norm_cfg=dict(type='BN'),
                           variants={'rep': dict(repvgg=True)})
    trained = {r.name: r for r in benchmark_necks(
        configs, V39_800, measure_latency=False)}
    deployed = {r.name: r for r in benchmark_necks(
        configs, V39_800, measure_latency=False, inference_form=True)}
    assert trained['rep'].flops > trained['OSA-FPN'].flops
    # fused: the plain neck's convs, with biases for the folded norms
    assert deployed['rep'].flops == deployed['OSA-FPN'].flops == \
        trained['OSA-FPN'].flops
    assert deployed['rep'].params == deployed['OSA-FPN'].params
    assert deployed['FPN'].params < trained['FPN'].params  # BN folded


def test_sweep_trades_width_and_depth_for_flops():
    rows = sweep_osa_settings(V39_800, (64, 128), (1, 2, 3),
                              expand_ratio=0.5)
    fpn, by_name = rows[0], {row.name: row for row in rows[1:]}
    assert fpn.name == 'FPN' and all(r.reference == 'FPN' for r in rows)
    ratio = {k: r.flops_ratio for k, r in by_name.items()}
    assert ratio['m=64 n=1'] < ratio['m=64 n=2'] < ratio['m=64 n=3']
    assert ratio['m=64 n=2'] < ratio['m=128 n=2'] < 1 < ratio['m=128 n=3']
    paths = sweep_osa_settings(V39_800, (64, ), (1, ),
                               neck_type='OSAPAFPN')
    assert [r.name for r in paths] == ['PAFPN', 'm=64 n=1']
    # without expand_ratio the neck's default (0.375: mid = 96)
    default = sweep_osa_settings(V39_800, (96, ), (2, ))[1]
    assert default.flops == osafpn_flops(V39_800, 256, 96, 96, 2)


def test_side_by_side_timing_and_paired_ratios():
    shapes = vovnet_feature_shapes('V-27-slim', (64, 64))
    configs = neck_configs([s[0] for s in shapes], 32, 5,
                           dict(type='GN', num_groups=8),
                           dict(module_channels=16),
                           {'narrow': dict(type='OSAPAFPN',
                                           module_channels=8)})
    necks = {name: MODELS.build(cfg) for name, cfg in configs.items()}
    times = time_necks(necks, random_features(shapes), repeats=3, warmup=1)
    assert list(times) == ['FPN', 'PAFPN', 'OSA-FPN', 'OSA-PAFPN', 'narrow']
    assert all(len(t) == 3 and min(t) > 0 for t in times.values())
    rows = benchmark_necks(configs, shapes, repeats=3, warmup=0)
    refs = {row.name: row.reference for row in rows}
    assert refs == {'FPN': 'FPN', 'PAFPN': 'PAFPN', 'OSA-FPN': 'FPN',
                    'OSA-PAFPN': 'PAFPN', 'narrow': 'PAFPN'}
    assert rows[0].latency_ratio == 1.0 and rows[1].latency_ratio == 1.0
    for r in rows:
        q1, q3 = r.latency_ratio_quartiles
        assert r.latency_ms > 0 and 0 < q1 <= r.latency_ratio <= q3
    table = format_neck_table(rows).splitlines()
    assert len(table) == 2 + 5 and 'latency / ref (paired median)' in \
        table[0]
    assert table[4].startswith('| OSA-FPN | ') and 'x FPN' in table[4]
    assert 'x PAFPN' in table[6]
    with pytest.raises(ValueError, match='repeats >= 1'):
        time_necks(necks, random_features(shapes), repeats=0)
    with pytest.raises(ValueError, match="'FPN' is already a row"):
        neck_configs([8], variants={'FPN': {}})


def load_cli(name='neck_benchmark'):
    spec = importlib.util.spec_from_file_location(
        f'{name}_cli', osp.join(ROOT, 'tools', 'analysis', f'{name}.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_cli_prints_and_writes_the_comparison(capsys, tmp_path):
    cli = load_cli()
    threads = torch.get_num_threads()
    try:
        cli.main(['--shape', '64', '96', '--repeats', '2', '--warmup', '0',
                  '--osa-options', 'layers_per_module=1', '--variant',
                  'OSA-PAFPN rep', 'type=OSAPAFPN', 'repvgg=True',
                  '--sweep-module-channels', '64', '128', '--out',
                  str(tmp_path), '--name', 'small'])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert '(256, 16, 24)' in out and 'GN(32) necks, 1 thread(s)' in out
    for row in ('| FPN | 3.019 |', '| PAFPN | 6.561 |', '| OSA-FPN |',
                '| OSA-PAFPN |', '| OSA-PAFPN rep |', '| m=64 n=1 |',
                '| m=128 n=1 |'):
        assert row in out
    for ext in ('md', 'json', 'png'):
        assert (tmp_path / f'small.{ext}').stat().st_size > 0
    rows = json.loads((tmp_path / 'small.json').read_text())
    assert rows[-1]['name'] == 'OSA-PAFPN rep'
    assert rows[-1]['reference'] == 'PAFPN' and rows[-1]['latency_ms'] > 0
    with pytest.raises(SystemExit):
        cli.parse_args(['--inference-form'])  # GroupNorm does not fold
    assert 'add --norm bn' in capsys.readouterr().err


def test_ablation_command_uses_the_seed_and_the_train_tool():
    command = train_command('a.py', 'w', 3, ['x=1'], python='py')
    assert command == ['py', osp.join(ROOT, 'tools', 'train.py'), 'a.py',
                       '--work-dir', 'w', '--cfg-options',
                       'randomness.seed=3', 'x=1']
    assert all(osp.isfile(osp.join(ROOT, c)) for c in ABLATION_CONFIGS)


def tiny(path, data_root, out):
    """An ablation config shrunk to 96 px images on the test data set."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    shrink_loaders(cfg, data_root)
    ann = osp.join(data_root, 'annotations', 'instances_val.json')
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = ann
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1,
                                by_epoch=False, begin=0, end=2)]
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor.window_size = 1
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.dump(out)
    return out


def test_ablation_run_trains_with_the_tool_and_reads_the_final_ap(
        tmp_path, shapes_root):
    # one side of the pair (both go through the same code) to keep it quick
    config = tiny(ABLATION_CONFIGS[1], shapes_root,
                  str(tmp_path / osp.basename(ABLATION_CONFIGS[1])))
    results = run_ablation(str(tmp_path / 'work'), [config], seed=0,
                           max_iters=2)
    name = osp.splitext(osp.basename(config))[0]
    assert list(results) == [name]
    metrics = results[name]
    assert metrics['iter'] == 2
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    assert 0 <= metrics['coco/segm_mAP'] <= 1
    # the numbers are the ones the run logged, with the seed asked for
    run = sorted((tmp_path / 'work' / name).glob('2*'))[-1]
    log = [json.loads(line) for line in open(run / 'vis_data' /
                                             'scalars.json')]
    assert log[-1]['coco/bbox_mAP'] == metrics['coco/bbox_mAP']
    assert [r['iter'] for r in log if 'loss' in r] == [1, 2]
    assert Config.fromfile(str(run / 'vis_data' / 'config.py')
                           ).randomness.seed == 0
    table = format_ablation_table(results).splitlines()
    assert len(table) == 3 and 'bbox_mAP' in table[0]
    assert table[2].startswith(f'| {name} | 2 | ')


def test_ablation_without_evaluation_says_why(tmp_path):
    from vovdet.analysis.neck_ablation import final_metrics
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        final_metrics(str(tmp_path))
    run = tmp_path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    (run / 'scalars.json').write_text(json.dumps(dict(loss=1.0, iter=1)))
    with pytest.raises(FileNotFoundError, match='val_interval'):
        final_metrics(str(tmp_path))


def test_tradeoff_puts_each_necks_accuracy_beside_its_latency(
        tmp_path, capsys):
    from vovdet.analysis.neck_ablation import LATENCY_ROWS, tradeoff_points
    latency_dir = osp.join(ROOT, 'docs', 'results', 'necks')
    # every ablation config, the optional variants too, has a timed row
    for name in glob.glob(osp.join(ROOT, 'configs', '*_shapes_ablation.py')):
        assert osp.splitext(osp.basename(name))[0] in LATENCY_ROWS
    results = [
        dict(config=f'configs/{name}.py', seed=seed,
             coco_ap={'coco/bbox_mAP': ap})
        for name, aps in (
            ('vovnet19slim_fpn_maskrcnn_shapes_ablation', (30., 32., 34.)),
            ('vovnet19slim_osapafpn_maskrcnn_shapes_ablation', (40., 41.)),
            ('vovnet19slim_osafpnrep_maskrcnn_shapes_ablation', (20., )))
        for seed, ap in enumerate(aps)
    ]
    fpn, osapafpn, rep = tradeoff_points(results, latency_dir)
    assert (fpn['neck'], fpn['mean'], fpn['std']) == ('FPN', 32., 2.)
    assert fpn['latency_vs_fpn'] == 1.0 and fpn['seeds'] == [0, 1, 2]
    assert osapafpn['reference'] == 'PAFPN' and osapafpn['mean'] == 40.5
    tables = {
        name: {row['name']: row for row in json.load(
            open(osp.join(latency_dir, f'{name}.json')))}
        for name in ('v2_19slim_192_gn16', 'v2_19slim_192_bn_inference')}
    gn = tables['v2_19slim_192_gn16']
    assert osapafpn['latency_vs_fpn'] == pytest.approx(
        gn['OSA-PAFPN']['latency_ms'] / gn['FPN']['latency_ms'])
    # the RepVGG neck is timed folded, beside the BN FPN of its own table
    bn = tables['v2_19slim_192_bn_inference']
    assert rep['latency_vs_fpn'] == pytest.approx(
        bn['OSA-FPN rep']['latency_ms'] / bn['FPN']['latency_ms'])

    # a variant trained with --cfg-options is its own point, keyed by them
    variant = dict(results[3], cfg_options={'model.neck.identity': True})
    with pytest.raises(KeyError, match='identity=True has no latency row'):
        tradeoff_points(results + [variant], latency_dir)
    rows = dict(LATENCY_ROWS)
    rows['vovnet19slim_osapafpn_maskrcnn_shapes_ablation '
         'model.neck.identity=True'] = ('v2_19slim_192_gn16', 'OSA-FPN lite')
    points = tradeoff_points(results + [variant], latency_dir, rows=rows)
    assert [p['neck'] for p in points] == ['FPN', 'OSA-PAFPN', 'OSA-FPN rep',
                                           'OSA-FPN lite']
    learning = tmp_path / 'runs.json'
    learning.write_text(json.dumps(results))
    tradeoff_main = load_cli('neck_tradeoff').main
    tradeoff_main(['--learning', str(learning), '--latency-dir',
                   latency_dir, '--out', str(tmp_path), '--name', 'necks'])
    table = (tmp_path / 'necks.md').read_text().splitlines()
    assert table[2].startswith('| FPN | 32.0 ± 2.0 | 3 | 30.0, 32.0, 34.0 |')
    assert (tmp_path / 'necks.png').stat().st_size > 0
    # a config that was never timed: exit 2 naming it and the fix
    results[0]['config'] = 'configs/my_neck_ablation.py'
    learning.write_text(json.dumps(results))
    with pytest.raises(SystemExit) as exit_info:
        tradeoff_main(['--learning', str(learning)])
    assert exit_info.value.code == 2
    assert 'my_neck_ablation has no latency row: add it to LATENCY_ROWS' in (
        capsys.readouterr().err)
