"""Tests for vovdet.analysis.benchmark and vovdet.analysis.paper_table."""
import copy
import dataclasses
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401  (registers the backbones)
from vovdet.analysis import get_complexity, get_config_complexity
from vovdet.analysis.benchmark import (BenchmarkSettings, EnergyMonitor,
                                       EnergyUnavailable, ModelSpec,
                                       PeakMemory, RaplMeter, autocast_network,
                                       benchmark_model, build_spec_model,
                                       find_rapl_zones, format_result,
                                       paired_benchmark, rapl_delta_uj,
                                       time_in_turns)
from vovdet.analysis.paper_table import (format_markdown, parse_backbone_spec,
                                         parse_entry, run_table)
from tests.test_deploy.test_inference_form import (PreActivation,
                                                   randomise_bn)
from vovdet.deploy import ReparameterizationError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'vovnet19slim_maskrcnn_shapes.py')
THREADS = os.environ.get('VOVDET_TEST_THREADS', '1')

register_all_modules()


def tiny_settings(rapl_root, **kwargs):
    return BenchmarkSettings(
        shape=(64, 64), repeats=2, warmup=1, device='cpu',
        rapl_root=str(rapl_root), **kwargs)


def write(path, text):
    """Replace a file atomically (the sampling thread may be reading)."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(str(text))
    os.replace(tmp, path)


def fake_zone(root, entry, name, energy, max_range=1000):
    folder = root / entry
    folder.mkdir(parents=True)
    write(folder / 'name', name)
    write(folder / 'energy_uj', energy)
    write(folder / 'max_energy_range_uj', max_range)
    return folder


@pytest.fixture
def rapl_tree(tmp_path):
    """Two packages plus the zones that must not be counted again."""
    root = tmp_path / 'powercap'
    p0 = fake_zone(root, 'intel-rapl:0', 'package-0', 900)
    p1 = fake_zone(root, 'intel-rapl:1', 'package-1', 500)
    fake_zone(root, 'intel-rapl:0:0', 'core', 10)
    fake_zone(root, 'intel-rapl:2', 'psys', 10)
    fake_zone(root, 'intel-rapl-mmio:0', 'package-0', 10)
    return root, p0, p1


def test_rapl_delta_handles_wrap_around():
    assert rapl_delta_uj(100, 250, 1000) == 150
    assert rapl_delta_uj(250, 250, 1000) == 0
    # 900 -> 1000 (wrap) -> 50
    assert rapl_delta_uj(900, 50, 1000) == 150


def test_rapl_zones_are_packages_only(rapl_tree):
    root, p0, p1 = rapl_tree
    zones = find_rapl_zones(str(root))
    assert [z.name for z in zones] == ['package-0', 'package-1']
    assert [z.energy_file for z in zones] == [
        str(p0 / 'energy_uj'), str(p1 / 'energy_uj')
    ]
    assert [z.max_range_uj for z in zones] == [1000, 1000]


def test_rapl_meter_sums_packages_across_wraps(rapl_tree):
    root, p0, p1 = rapl_tree
    meter = RaplMeter(find_rapl_zones(str(root)))
    meter.start()
    write(p0 / 'energy_uj', 100)  # wrapped: 900 -> 1000 -> 100 = 200
    write(p1 / 'energy_uj', 800)  # 300
    meter.poll()
    write(p0 / 'energy_uj', 300)  # 200
    meter.poll()
    assert meter.joules(1.0) == pytest.approx(700e-6)


def test_energy_monitor_integrates_rapl_window(rapl_tree):
    root, p0, p1 = rapl_tree
    monitor = EnergyMonitor(torch.device('cpu'), str(root), interval=0.005)
    assert monitor.reason == ''
    monitor.start()
    write(p0 / 'energy_uj', 150)  # 250 uJ through the wrap
    write(p1 / 'energy_uj', 550)  # 50 uJ
    reading = monitor.stop()
    assert reading.source == 'rapl'
    assert reading.joules == pytest.approx(300e-6)
    assert reading.average_power_w > 0


def test_energy_unavailable_reasons(tmp_path):
    with pytest.raises(EnergyUnavailable, match='does not exist'):
        find_rapl_zones(str(tmp_path / 'missing'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(EnergyUnavailable, match='no intel-rapl'):
        find_rapl_zones(str(empty))
    # an energy_uj that cannot be read as a counter
    broken = tmp_path / 'broken'
    zone = fake_zone(broken, 'intel-rapl:0', 'package-0', 1)
    os.remove(zone / 'energy_uj')
    (zone / 'energy_uj').mkdir()
    with pytest.raises(EnergyUnavailable, match='cannot read RAPL zone'):
        find_rapl_zones(str(broken))
    garbage = tmp_path / 'garbage'
    zone = fake_zone(garbage, 'intel-rapl:0', 'package-0', 'n/a')
    with pytest.raises(EnergyUnavailable, match='ValueError'):
        find_rapl_zones(str(garbage))

    monitor = EnergyMonitor(torch.device('cpu'), str(broken))
    monitor.start()
    reading = monitor.stop()
    assert reading.joules is None and reading.average_power_w is None
    assert reading.source == 'unavailable'
    assert 'cannot read RAPL zone' in reading.reason


def test_peak_memory_sees_a_large_allocation():
    memory = PeakMemory(torch.device('cpu'))
    memory.reset()
    assert memory.source == 'process peak RSS (VmHWM, reset before warm-up)'
    before = memory.peak_mb()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert block.sum().item() == 64 * 2**20 // 4
    assert memory.peak_mb() - before >= 60
    del block


def test_backbone_benchmark_end_to_end_without_energy_sensor(tmp_path):
    model = MODELS.build(dict(type='VoVNet', arch='V-27-slim'))
    expected = get_complexity(copy.deepcopy(model), torch.rand(2, 3, 64, 64))
    result = benchmark_model(
        model, tiny_settings(tmp_path, batch=2), name='V-27-slim')
    assert result.name == 'V-27-slim'
    assert len(result.latencies_ms) == 2
    median = sorted(result.latencies_ms)[0] / 2 + \
        sorted(result.latencies_ms)[1] / 2
    assert result.latency_median_ms == pytest.approx(median)
    assert min(result.latencies_ms) <= result.latency_p90_ms <= max(
        result.latencies_ms)
    assert result.fps == pytest.approx(2 / (median / 1e3))
    # counted on the timed call: both images of the batch
    assert result.flops == expected.flops
    assert result.mac == expected.mac
    assert result.params == 3_012_736
    assert result.gflops_per_s == pytest.approx(
        result.flops / (median / 1e3) / 1e9)
    assert result.peak_memory_mb >= 0.99 * result.memory_before_mb > 0
    assert result.energy_j_per_img is None
    assert result.energy_source == 'unavailable'
    assert 'no intel-rapl' in result.energy_reason
    assert result.folded_bn == 0 and result.transform_max_rel_diff is None
    report = format_result(result)
    assert 'energy:              unavailable (no intel-rapl' in report
    assert 'batch 2 x 3 x 64 x 64, 1 warm-up + 2 timed' in report


def test_repvgg_deploy_and_fusion_in_benchmark(tmp_path):
    model = randomise_bn(MODELS.build(dict(type='RepVGG', arch='A0')))
    train_params = sum(p.numel() for p in model.parameters())
    result = benchmark_model(
        model, tiny_settings(tmp_path, deploy=True, fuse_conv_bn=True,
                             channels_last=True))
    assert result.deployed == ['']
    assert result.folded_bn == 0  # deploy already removed every BN
    assert 0 <= result.transform_max_rel_diff < 1e-4
    assert result.params < train_params
    # the deployed form: one 3x3 conv with bias per block
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert 'max relative output change' in format_result(result)


def test_fusion_that_changes_outputs_is_refused(tmp_path):
    model = PreActivation()
    with torch.no_grad():
        model.bn.running_mean.fill_(2.0)
        model.bn.running_var.fill_(4.0)
    with pytest.raises(ReparameterizationError, match='changed the output'):
        benchmark_model(model, tiny_settings(tmp_path, fuse_conv_bn=True))


def test_deploy_needs_a_reparameterisable_model(tmp_path):
    model = MODELS.build(dict(type='VoVNet', arch='V-27-slim'))
    with pytest.raises(ValueError, match='VoVNet has no module with'):
        benchmark_model(model, tiny_settings(tmp_path, deploy=True))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="unknown part 'neck'"):
        BenchmarkSettings(part='neck')
    with pytest.raises(ValueError, match="needs part='detector'"):
        BenchmarkSettings(mode='train')
    with pytest.raises(ValueError, match='inference-only'):
        BenchmarkSettings(mode='train', part='detector', fuse_conv_bn=True)
    with pytest.raises(ValueError, match='repeats >= 1'):
        BenchmarkSettings(repeats=0)


def tiny_detector_config(tmp_path):
    """The demo detector with a small RPN/RoI budget for 64 px inputs."""
    cfg = Config.fromfile(DEMO)
    cfg.model.test_cfg.rpn.nms_pre = 100
    cfg.model.test_cfg.rpn.max_per_img = 20
    cfg.model.test_cfg.rcnn.max_per_img = 5
    cfg.model.train_cfg.rpn_proposal.max_per_img = 20
    cfg.model.train_cfg.rcnn.sampler.num = 16
    path = str(tmp_path / 'tiny_detector.py')
    cfg.dump(path)
    return path


def test_detector_train_step_benchmark(tmp_path):
    from vovdet.analysis import ModelSpec, benchmark_spec
    spec = ModelSpec('demo', config=tiny_detector_config(tmp_path))
    result = benchmark_spec(
        spec, tiny_settings(tmp_path, part='detector', mode='train'))
    assert result.settings['mode'] == 'train'
    assert result.flops is None and result.gflops_per_s is None
    assert len(result.latencies_ms) == 2
    assert math.isfinite(result.last_loss) and result.last_loss > 0
    assert result.fps == pytest.approx(1e3 / result.latency_median_ms)
    assert 'last train loss' in format_result(result)


def test_cli_detector_inference_end_to_end(tmp_path):
    config = tiny_detector_config(tmp_path)
    out = tmp_path / 'result.json'
    proc = subprocess.run(
        [
            sys.executable, 'tools/analysis/benchmark.py', config,
            '--part', 'detector', '--shape', '64', '64', '--repeats', '2',
            '--warmup', '1', '--device', 'cpu', '--threads', THREADS,
            '--rapl-root', str(tmp_path / 'no_powercap'), '--json-out',
            str(out), '--cfg-options', 'model.test_cfg.rcnn.score_thr=0.0'
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'run:                 detector inference, batch 1 x 3 x 64 x 64' \
        in proc.stdout
    assert 'energy:              unavailable (' in proc.stdout
    result = json.loads(out.read_text())
    assert len(result['latencies_ms']) == 2
    assert result['energy_j_per_img'] is None
    assert 'does not exist' in result['energy_reason']
    # end to end: the RoI heads run too, on top of backbone + neck + RPN
    features_and_rpn = get_config_complexity(config, (64, 64), 'detector')
    assert result['flops'] > features_and_rpn.flops
    assert result['params'] == features_and_rpn.params
    assert result['gflops_per_s'] == pytest.approx(
        result['flops'] / result['latency_median_ms'] / 1e6)


def test_parse_model_entries():
    assert parse_backbone_spec('VoVNet-39') == dict(type='VoVNet',
                                                    arch='V-39')
    assert parse_backbone_spec(
        'VoVNet:arch=V-27-slim,out_indices=(2, 3),norm_cfg.type=BN') == \
        dict(type='VoVNet', arch='V-27-slim', out_indices=(2, 3),
             norm_cfg=dict(type='BN'))
    entry = parse_entry('RepVGG-B1+deploy+fuse', 'backbone')
    assert entry.spec.label == 'RepVGG-B1+deploy+fuse'
    assert entry.base_label == 'RepVGG-B1'
    assert entry.variants == ['deploy', 'fuse']
    assert entry.spec.backbone == dict(type='RepVGG', arch='B1')
    entry = parse_entry(DEMO + '+channels-last', 'config')
    assert entry.spec.label == 'vovnet19slim_maskrcnn_shapes+channels-last'
    assert entry.spec.config == DEMO
    with pytest.raises(ValueError, match='unknown variant'):
        parse_entry('VoVNet-39+fast', 'backbone')
    with pytest.raises(ValueError, match='neither a named backbone'):
        parse_entry('VoVNet 39', 'backbone')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        parse_entry('configs/none.py', 'config')


def test_paper_table_cli_writes_markdown_and_png(tmp_path):
    out = tmp_path / 'results'
    proc = subprocess.run(
        [
            sys.executable, 'tools/analysis/paper_table.py', '--backbones',
            'VoVNet-27-slim', 'VoVNet-27-slim+fuse', 'RepVGG-A0+deploy',
            '--out', str(out), '--name', 'tiny', '--title', 'Tiny table',
            '--shape', '64', '64', '--repeats', '2', '--warmup', '1',
            '--device', 'cpu', '--threads', THREADS, '--rapl-root',
            str(tmp_path / 'no_powercap'), '--gemm-size', '64',
            '--peak-convs', '8x16', '16x8', '--in-process'
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    markdown = (out / 'tiny.md').read_text()
    lines = markdown.splitlines()
    assert lines[0] == '# Tiny table'
    assert 'all models in one process' in lines[2]
    header = [c.strip() for c in lines[lines.index(next(
        line for line in lines if line.startswith('| Model')))].split('|')]
    assert header[1:8] == [
        'Model', 'FLOPs (G)', 'FPS', '#Param (M)', 'Memory (MB)',
        'Energy (J/img)', 'Comp. eff. (GFLOP/s)'
    ]
    table = json.loads((out / 'tiny.json').read_text())
    rows = table['rows']
    assert [r['name'] for r in rows] == [
        'VoVNet-27-slim', 'VoVNet-27-slim+fuse', 'RepVGG-A0+deploy'
    ]
    assert rows[1]['folded_bn'] == 27 and rows[1]['settings']['fuse_conv_bn']
    assert rows[2]['deployed'] == [''] and rows[2]['settings']['deploy']
    # fusion leaves the multiply-adds alone; deploy drops the 1x1 branches
    assert rows[0]['flops'] == rows[1]['flops']
    assert rows[0]['params'] == 3_012_736
    speed_up = rows[0]['latency_median_ms'] / rows[1]['latency_median_ms']
    assert table['speed_ups'] == [None, pytest.approx(speed_up), None]
    for row in rows:
        cells = [c.strip() for c in next(
            line for line in lines
            if line.startswith(f"| {row['name']} |")).split('|')]
        assert cells[2] == f"{row['flops'] / 1e9:.2f}"
        assert cells[3] == f"{row['fps']:.2f}"
        assert cells[6] == 'n/a [1]'
    assert any(line.startswith('[1] energy unavailable: ') and
               'does not exist' in line for line in lines)
    peaks = [p['name'] for p in table['peaks']]
    assert peaks == [
        'GEMM 64x64x64', 'conv3x3 8->8 @ 16x16 NCHW',
        'conv3x3 8->8 @ 16x16 NHWC', 'conv3x3 16->16 @ 8x8 NCHW',
        'conv3x3 16->16 @ 8x8 NHWC'
    ]
    assert sum('(3×3-conv peak)' in line for line in lines) == 1
    png = (out / 'tiny.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000


def test_table_rows_run_in_fresh_processes(tmp_path):
    entry = parse_entry('ResNet:depth=18,base_channels=8+fuse', 'backbone')
    table = run_table([entry], tiny_settings(tmp_path, threads=1),
                      title='isolated', isolate=True,
                      peak_kwargs=dict(gemm_size=32, conv_shapes=((8, 8), ),
                                       repeats=2))
    (row, ) = table.rows
    model = MODELS.build(dict(type='ResNet', depth=18, base_channels=8))
    expected = get_complexity(model, (3, 64, 64))
    assert row.name == 'ResNet:depth=18,base_channels=8+fuse'
    assert row.settings['fuse_conv_bn'] and row.threads == 1
    # stem + 8 blocks x 2 convs + 3 downsample convs, each followed by BN
    assert row.folded_bn == 20
    assert row.flops == expected.flops
    # each folded BN's gamma and beta (2C) become one conv bias (C)
    bn_channels = sum(m.num_features for m in model.modules()
                      if isinstance(m, _BatchNorm))
    assert bn_channels == 600
    assert row.params == expected.params - bn_channels
    assert row.memory_source == \
        'process peak RSS (VmHWM, reset before warm-up)'
    assert table.isolated
    assert table.speed_up(0) is None  # the plain model is not in the table
    markdown = format_markdown(table)
    assert 'each model in its own process' in markdown
    assert '| GEMM 32x32x32 |' in markdown


def test_time_in_turns_rotates_and_times_every_call():
    order = []
    calls = {
        label: (lambda label=label: order.append(label))
        for label in ('a', 'b', 'c')
    }
    times = time_in_turns(calls, warmup=1, rounds=3,
                          device=torch.device('cpu'))
    assert {k: len(v) for k, v in times.items()} == {'a': 3, 'b': 3, 'c': 3}
    assert all(t >= 0 for v in times.values() for t in v)
    # one warm-up round in order, then each round starts one further along
    assert order == list('abc' 'abc' 'bca' 'cab')


def test_paired_benchmark_gives_speed_ups_and_peak_fractions(tmp_path):
    settings = tiny_settings(tmp_path, threads=1)
    base = ModelSpec('ResNet-18', backbone=dict(type='ResNet', depth=18,
                                                base_channels=8))
    fused = ModelSpec('ResNet-18+fuse', backbone=base.backbone)
    specs = [(base, settings),
             (fused, dataclasses.replace(settings, fuse_conv_bn=True))]
    result = paired_benchmark(specs, peak_conv=(8, 16, False), warmup=1,
                              rounds=3)
    assert result.labels == ['ResNet-18', 'ResNet-18+fuse']
    assert set(result.latencies_ms) == {'ResNet-18', 'ResNet-18+fuse',
                                        'peak'}
    assert all(len(v) == 3 for v in result.latencies_ms.values())
    assert result.peak_name == 'conv3x3 8->8 @ 16x16 NCHW'
    assert result.flops['peak'] == 9 * 8 * 8 * 16 * 16
    assert result.flops['ResNet-18'] == result.flops['ResNet-18+fuse']
    # the speed-up is the median of the per-turn latency ratios
    ratios = sorted(a / b for a, b in zip(result.latencies_ms['ResNet-18'],
                                          result.latencies_ms[
                                              'ResNet-18+fuse']))
    assert result.speed_ups == {'ResNet-18+fuse': pytest.approx(ratios[1])}
    for label in result.labels:
        rates = sorted(
            (result.flops[label] / m) / (result.flops['peak'] / p)
            for m, p in zip(result.latencies_ms[label],
                            result.latencies_ms['peak']))
        assert result.peak_fractions[label] == pytest.approx(rates[1])
    with pytest.raises(ValueError, match='distinct labels'):
        paired_benchmark([(base, settings), (base, settings)])


def test_table_speed_ups_and_fractions_are_paired(tmp_path):
    entries = [parse_entry(e, 'backbone') for e in (
        'ResNet:depth=18,base_channels=8',
        'ResNet:depth=18,base_channels=8+fuse')]
    table = run_table(entries, tiny_settings(tmp_path, threads=1),
                      title='paired', isolate=True,
                      peak_kwargs=dict(gemm_size=32, conv_shapes=((8, 8), ),
                                       repeats=2))
    # one group: the plain model, its fused variant and the conv peak,
    # timed in turns in a child process
    (paired, ) = table.paired
    assert paired.labels == [e.spec.label for e in entries]
    assert paired.peak_name == table.conv_peak.name
    assert table.paired_speed_up(0) is None
    assert table.paired_speed_up(1) == paired.speed_ups[entries[1].spec.label]
    assert table.paired_peak_fraction(0) > 0
    data = table.to_dict()
    assert data['paired_speed_ups'] == [None, table.paired_speed_up(1)]
    markdown = format_markdown(table)
    assert '"speed-up" are paired' in markdown
    row = next(line for line in markdown.splitlines()
               if line.startswith(f'| {entries[1].spec.label} |'))
    assert row.rstrip().endswith(f'| {table.paired_speed_up(1):.2f}× |')


def test_paired_models_start_from_the_same_weights(tmp_path, monkeypatch):
    # a variant must see the detections its base sees, so both are built
    # from the same seed, as in separate processes
    from vovdet.analysis import benchmark
    built = []
    real_build = benchmark.build_spec_model

    def recording_build(spec, part):
        model, optim = real_build(spec, part)
        model.init_weights()
        built.append(torch.cat([p.detach().flatten()
                                for p in model.parameters()]))
        return model, optim

    monkeypatch.setattr(benchmark, 'build_spec_model', recording_build)
    torch.manual_seed(123)  # whatever state the caller left
    settings = tiny_settings(tmp_path, threads=1)
    spec = dict(type='ResNet', depth=18, base_channels=8)
    benchmark.paired_benchmark(
        [(ModelSpec('a', backbone=spec), settings),
         (ModelSpec('b', backbone=spec), settings)], warmup=0, rounds=1)
    assert len(built) == 2
    torch.testing.assert_close(built[0], built[1], rtol=0, atol=0)


def test_fp16_detector_runs_its_network_in_fp16_and_returns_fp32():
    model, _ = build_spec_model(
        ModelSpec('refinedet', config=osp.join(
            REPO, 'configs', 'vovnet39_refinedet320_coco.py')), 'detector')
    model.eval()
    assert autocast_network(model, 'cpu') == ['backbone', 'neck',
                                              'bbox_head']
    dtypes = []
    first_conv = next(m for m in model.backbone.modules()
                      if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, out: dtypes.append(
        out.dtype))
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
    assert dtypes == [torch.float16]
    assert feats and all(f.dtype == torch.float32 for f in feats)


def test_fp16_two_stage_detector_inference(tmp_path):
    from vovdet.analysis import benchmark_spec
    spec = ModelSpec('demo+fp16', config=tiny_detector_config(tmp_path))
    result = benchmark_spec(
        spec, tiny_settings(tmp_path, part='detector', amp=True))
    assert result.settings['amp'] and result.flops > 0
    assert 'transforms:          fp16-autocast' in format_result(result)
