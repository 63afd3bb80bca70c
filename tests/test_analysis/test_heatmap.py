"""Tests for vovdet.analysis.heatmap (dense-connection strengths)."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.runner import save_checkpoint

import vovdet  # noqa: F401  (registers the backbones)
from vovdet.analysis import build_model_from_config
from vovdet.analysis.heatmap import (connection_maps, group_mean_abs,
                                     save_heatmaps)
from vovdet.models.layers.osa import OSAModule

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'vovnet19slim_maskrcnn_shapes.py')

register_all_modules()


def random_signs(shape, value, gen):
    signs = torch.randint(0, 2, shape, generator=gen) * 2 - 1
    return signs.float() * value


def test_group_mean_abs_hand_values():
    weight = torch.tensor([[1., -3., 3., 2., -2.], [-1., 1., -1., 4., 0.]])
    weight = weight[:, :, None, None]
    # groups [1, 2, 2]: |1|,|-1| -> 1; |-3|,|3|,|1|,|-1| -> 2; 2,2,4,0 -> 2
    np.testing.assert_allclose(group_mean_abs(weight, [1, 2, 2]),
                               [1.0, 2.0, 2.0])
    with pytest.raises(ValueError, match='sum to 4'):
        group_mean_abs(weight, [2, 2])


def test_osa_module_map_from_known_weights():
    # input 4 channels, two 3x3 layers of 2 channels, aggregation 8 -> 3
    module = OSAModule(4, 2, 3, num_layers=2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.layers[0].conv.weight.copy_(
            random_signs((2, 4, 3, 3), 0.5, gen))
        module.layers[1].conv.weight.copy_(
            random_signs((2, 2, 3, 3), 0.25, gen))
        agg = torch.cat([
            random_signs((3, 4, 1, 1), 1.0, gen),
            random_signs((3, 2, 1, 1), 2.0, gen),
            random_signs((3, 2, 1, 1), 4.0, gen)
        ], 1)
        module.aggregation.conv.weight.copy_(agg)
    (osa, ) = connection_maps(torch.nn.Sequential(module))
    assert osa.name == '0' and osa.kind == 'osa' and osa.figure == ''
    assert osa.sources == ['input', 'layer1', 'layer2']
    assert osa.targets == ['layer1', 'layer2', 'aggregation']
    nan = np.nan
    np.testing.assert_allclose(
        osa.mean_abs, [[0.5, nan, nan], [nan, 0.25, nan], [1.0, 2.0, 4.0]])
    np.testing.assert_allclose(
        osa.normalised, [[1.0, nan, nan], [nan, 1.0, nan], [0.25, 0.5, 1.0]])


def test_vovnet_maps_one_figure_per_stage():
    model = MODELS.build(dict(type='VoVNet', arch='V-39'))
    maps = connection_maps(model)
    # stages 2-4 start with a max-pool (index 0) in the pytorch layout
    assert [m.name for m in maps] == [
        'stage1.0', 'stage2.1', 'stage3.1', 'stage3.2', 'stage4.1',
        'stage4.2'
    ]
    assert [m.figure for m in maps] == [
        'stage1', 'stage2', 'stage3', 'stage3', 'stage4', 'stage4'
    ]
    stage3 = maps[2]
    # aggregation of stage3's first module: 512 input + 5 x 192 channels
    weight = model.stage3[1].aggregation.conv.weight
    assert weight.shape[1] == 512 + 5 * 192
    np.testing.assert_allclose(
        stage3.mean_abs[-1],
        group_mean_abs(weight, [512] + [192] * 5))
    assert np.nanmax(stage3.normalised[-1]) == 1.0


def test_densenet_maps_include_the_transition():
    model = MODELS.build(dict(type='DenseNet', arch='121'))
    maps = connection_maps(model)
    assert [m.name for m in maps] == [
        f'stage{i}.denseblock' for i in range(1, 5)
    ]
    assert [m.mean_abs.shape for m in maps] == [(7, 7), (13, 13), (25, 25),
                                                (16, 17)]
    block1 = maps[0]
    assert block1.targets[-1] == 'transition'
    # layer l reads the block input and layers 1..l-1: a lower triangle
    finite = ~np.isnan(block1.mean_abs)
    assert finite.sum(1).tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert np.tril(np.ones((6, 7), bool)).tolist() == finite[:6].tolist()
    layer3 = model.stage1.denseblock.denselayer3
    np.testing.assert_allclose(block1.mean_abs[2, :3],
                               group_mean_abs(layer3.conv1.weight,
                                              [64, 32, 32]))
    np.testing.assert_allclose(
        block1.mean_abs[6],
        group_mean_abs(model.stage2.transition.conv.weight,
                       [64] + [32] * 6))
    np.testing.assert_allclose(np.nanmax(block1.normalised, 1), 1.0)


def test_densenet_pngs(tmp_path):
    model = MODELS.build(dict(type='DenseNet', arch='121'))
    paths = save_heatmaps(connection_maps(model), str(tmp_path))
    assert [osp.basename(p) for p in paths] == [
        f'stage{i}_denseblock.png' for i in range(1, 5)
    ] + ['connection_strengths.json']
    for path in paths[:-1]:
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_model_without_dense_connections_is_refused():
    with pytest.raises(ValueError, match='no OSAModule and no DenseBlock'):
        connection_maps(MODELS.build(dict(type='ResNet', depth=18)))


def test_cli_writes_pngs_for_a_saved_detector(tmp_path):
    model = build_model_from_config(DEMO)
    model.init_weights()
    ckpt = str(tmp_path / 'demo.pth')
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'heatmaps'
    proc = subprocess.run(
        [
            sys.executable, 'tools/analysis/dense_connection_heatmap.py',
            DEMO, ckpt, '--out', str(out)
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pngs = [f'backbone_stage{i}.png' for i in range(1, 5)]
    # mmengine logs the checkpoint loading first
    assert proc.stdout.splitlines()[-5:] == [str(out / p) for p in pngs] + [
        str(out / 'connection_strengths.json')
    ]
    for png in pngs:
        data = (out / png).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5_000
    saved = json.loads((out / 'connection_strengths.json').read_text())
    expected = connection_maps(model)
    assert [m['name'] for m in saved] == [m.name for m in expected] == [
        'backbone.stage1.0', 'backbone.stage2.1', 'backbone.stage3.1',
        'backbone.stage4.1'
    ]
    # V2-19-slim: 3 layers per OSA module
    for got, want in zip(saved, expected):
        assert got['targets'] == ['layer1', 'layer2', 'layer3',
                                  'aggregation']
        row = np.array(got['mean_abs'][-1], dtype=float)
        np.testing.assert_allclose(row, want.mean_abs[-1], rtol=1e-6)
        assert max(got['normalised'][-1]) == pytest.approx(1.0)
