"""Weight converters: every source key mapped or deliberately dropped, and
the converted backbone reproducing the source model's features.

The fixtures in ``tests/fixtures/weights`` were recorded from timm and
torchvision by ``generate_fixtures.py`` (see there); the weights behind the
recorded features are recreated here from the key names alone.
"""
import functools
import glob
import gzip
import json
import os.path as osp
import runpy
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS

import vovdet  # noqa: F401
from tests.fixtures.weights.synthetic_weights import (checksum,
                                                      sample_positions,
                                                      synthetic_input,
                                                      synthetic_state_dict,
                                                      synthetic_tensor)
from vovdet.models.converters import (SUPPORTED_MODELS, WeightConversionError,
                                      convert_state_dict, load_safetensors,
                                      load_source_state_dict,
                                      target_state_dict_shapes)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FIXTURE_DIR = osp.join(ROOT, 'tests', 'fixtures', 'weights')
TOOL = osp.join(ROOT, 'tools', 'convert_weights.py')

_V2 = dict(stem_stride_mode='pytorch', ese_placement='last')
_EFFICIENTNET = dict(with_head_conv=True,
                     norm_cfg=dict(type='BN', eps=1e-5, requires_grad=True))
# The backbone each source model must become (docs/backbones.md, "Weight
# converters").
EXPECTED_BACKBONES = {
    ('timm', 'vovnet39a'):
    dict(type='VoVNet', arch='V-39', stem_stride_mode='pytorch'),
    ('timm', 'vovnet57a'):
    dict(type='VoVNet', arch='V-57', stem_stride_mode='pytorch'),
    ('timm', 'ese_vovnet19b_slim_dw'):
    dict(type='VoVNet', arch='V2-19-slim-dw', **_V2),
    ('timm', 'ese_vovnet19b_dw'):
    dict(type='VoVNet', arch='V2-19-dw', **_V2),
    ('timm', 'ese_vovnet19b_slim'):
    dict(type='VoVNet', arch='V2-19-slim', **_V2),
    ('timm', 'ese_vovnet39b'):
    dict(type='VoVNet', arch='V2-39', **_V2),
    ('timm', 'ese_vovnet57b'):
    dict(type='VoVNet', arch='V2-57', **_V2),
    ('timm', 'ese_vovnet99b'):
    dict(type='VoVNet', arch='V2-99', **_V2),
    **{('timm', f'repvgg_{arch.lower()}'):
       dict(type='RepVGG', arch=arch, deploy=False)
       for arch in ('A0', 'A1', 'A2', 'B0', 'B1', 'B1g4', 'B2', 'B2g4', 'B3',
                    'B3g4')},
    **{('timm', f'efficientnet_b{i}'):
       dict(type='VoVDetEfficientNet', arch=f'b{i}', **_EFFICIENTNET)
       for i in range(8)},
    **{('repvgg-official', f'RepVGG-{arch}'):
       dict(type='RepVGG', arch=arch, deploy=False)
       for arch in ('A0', 'A1', 'A2', 'B0', 'B1', 'B1g2', 'B1g4', 'B2',
                    'B2g4', 'B3', 'B3g4')},
    **{('torchvision', f'densenet{arch}'): dict(type='DenseNet', arch=arch)
       for arch in ('121', '161', '201')},
}
# Source keys dropped on purpose: the ImageNet classifier, nothing else.
DROPPED = {
    'VoVNet': ('head.fc.weight', 'head.fc.bias'),
    'timm-RepVGG': ('head.fc.weight', 'head.fc.bias'),
    'official-RepVGG': ('linear.weight', 'linear.bias'),
    'VoVDetEfficientNet': ('classifier.weight', 'classifier.bias'),
    'DenseNet': ('classifier.weight', 'classifier.bias'),
}


@functools.lru_cache(maxsize=None)
def load_fixture(path):
    with gzip.open(path, 'rt', encoding='utf-8') as f:
        return json.load(f)


FIXTURES = sorted(glob.glob(osp.join(FIXTURE_DIR, '*.json.gz')))
FEATURE_FIXTURES = [p for p in FIXTURES if 'outputs' in load_fixture(p)]
DEPLOY_FIXTURES = [p for p in FIXTURES if 'deploy_keys' in load_fixture(p)]


def fixture_id(path):
    return osp.basename(path)[:-len('.json.gz')]


def shapes_of(keys):
    return {k: (tuple(shape), getattr(torch, dtype))
            for k, shape, dtype in keys}


def meta_state_dict(keys):
    """Shape-only tensors: enough for the key and shape checks."""
    return {
        k: torch.empty(shape, dtype=dtype, device='meta')
        for k, (shape, dtype) in shapes_of(keys).items()
    }


def expected_dropped(source, backbone_cfg):
    family = backbone_cfg['type']
    if family == 'RepVGG':
        family = 'official-RepVGG' if source == 'repvgg-official' else (
            'timm-RepVGG')
    return DROPPED[family]


def check_complete_mapping(source, model, state_dict):
    """Convert and assert every key is used once with its shape."""
    result = convert_state_dict(source, model, state_dict)
    dropped = expected_dropped(source, result.backbone_cfg)
    assert result.dropped_keys == dropped
    assert result.filled_keys == ()
    target = target_state_dict_shapes(result.backbone_cfg)
    assert list(result.state_dict) == list(target)
    for key, shape in target.items():
        assert result.state_dict[key].shape == shape, key
    # Every kept source tensor appears exactly once in the result.
    used = [id(v) for v in result.state_dict.values()]
    kept = [id(v) for k, v in state_dict.items() if k not in dropped]
    assert sorted(used) == sorted(kept)
    assert len(state_dict) == len(result.state_dict) + len(dropped)
    return result


def test_every_supported_model_has_a_fixture():
    recorded = {(load_fixture(p)['source'], load_fixture(p)['model'])
                for p in FIXTURES}
    supported = {(source, model)
                 for source, models in SUPPORTED_MODELS.items()
                 for model in models}
    assert recorded == supported == set(EXPECTED_BACKBONES)
    # Every source with a Python package has recorded features; only the
    # official RepVGG repository (not installable) has key lists alone.
    assert {(load_fixture(p)['source'], load_fixture(p)['model'])
            for p in FEATURE_FIXTURES} == {
                s for s in supported if s[0] != 'repvgg-official'}


@pytest.mark.parametrize('path', FIXTURES, ids=fixture_id)
def test_converter_maps_every_key_with_matching_shape(path):
    fixture = load_fixture(path)
    source, model = fixture['source'], fixture['model']
    result = check_complete_mapping(source, model,
                                    meta_state_dict(fixture['keys']))
    assert result.backbone_cfg == EXPECTED_BACKBONES[(source, model)]


@pytest.mark.parametrize('path', DEPLOY_FIXTURES, ids=fixture_id)
def test_reparameterised_repvgg_converts_to_deploy_form(path):
    fixture = load_fixture(path)
    source, model = fixture['source'], fixture['model']
    result = check_complete_mapping(source, model,
                                    meta_state_dict(fixture['deploy_keys']))
    expected = dict(EXPECTED_BACKBONES[(source, model)], deploy=True)
    assert result.backbone_cfg == expected
    assert all('.fused_conv.' in k for k in result.state_dict)


def build_loaded(backbone_cfg, state_dict):
    """Build on the meta device and take the converted tensors as is."""
    with torch.device('meta'):
        model = MODELS.build(backbone_cfg)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def assert_matches_recorded(outputs, fixture):
    assert len(outputs) == len(fixture['outputs']) == 4
    for out, expected in zip(outputs, fixture['outputs'], strict=True):
        assert list(out.shape) == expected['shape']
        flat = out.reshape(-1)
        samples = flat[sample_positions(flat.numel())]
        recorded = torch.tensor(expected['samples'])
        # The same float32 ops in the same order as the source; differences
        # are only those of differently blocked conv kernels.
        tolerance = 1e-5 * max(expected['std'], 1e-3)
        torch.testing.assert_close(samples, recorded, rtol=1e-4,
                                   atol=tolerance)
        assert flat.double().mean().item() == pytest.approx(
            expected['mean'], rel=1e-4, abs=tolerance)
        assert flat.double().std().item() == pytest.approx(
            expected['std'], rel=1e-4)


@pytest.mark.parametrize('path', FEATURE_FIXTURES, ids=fixture_id)
def test_converted_weights_reproduce_source_features(path):
    fixture = load_fixture(path)
    weights = synthetic_state_dict(shapes_of(fixture['keys']))
    # Same pseudo-random numbers as when the fixture was recorded.
    assert checksum(weights.values()) == pytest.approx(
        fixture['weights_checksum'], rel=1e-12)
    x = synthetic_input()
    assert checksum([x]) == pytest.approx(fixture['input_checksum'],
                                          rel=1e-12)
    result = convert_state_dict(fixture['source'], fixture['model'], weights)
    model = build_loaded(result.backbone_cfg, result.state_dict)
    with torch.no_grad():
        outputs = model(x)
    assert_matches_recorded(outputs, fixture)


def to_legacy_densenet_key(key):
    """The pre-0.3 torchvision name of a dense-layer key."""
    for name in ('norm1', 'conv1', 'norm2', 'conv2'):
        key = key.replace(f'.{name}.', f'.{name[:-1]}.{name[-1]}.')
    return key


def test_legacy_torchvision_densenet_keys():
    fixture = load_fixture(osp.join(FIXTURE_DIR,
                                    'torchvision-densenet121.json.gz'))
    current = meta_state_dict(fixture['keys'])
    # Old checkpoints: 'norm.1'-style names and no num_batches_tracked.
    legacy = {
        to_legacy_densenet_key(k): v
        for k, v in current.items() if not k.endswith('num_batches_tracked')
    }
    assert 'features.denseblock1.denselayer1.norm.1.weight' in legacy
    assert 'features.transition1.norm.weight' in legacy
    expected = convert_state_dict('torchvision', 'densenet121', current)
    result = convert_state_dict('torchvision', 'densenet121', legacy)
    assert list(result.state_dict) == list(expected.state_dict)
    assert result.filled_keys == tuple(
        k for k in expected.state_dict if k.endswith('num_batches_tracked'))
    # BN layers: 2 in each of the 58 dense layers, 3 transitions, norm0/5.
    assert len(result.filled_keys) == 2 * 58 + 3 + 2
    for key, value in result.state_dict.items():
        if key in result.filled_keys:
            assert value.item() == 0
        else:
            assert value is expected.state_dict[key]


def test_unknown_key_is_refused():
    fixture = load_fixture(osp.join(FIXTURE_DIR, 'timm-vovnet39a.json.gz'))
    state = meta_state_dict(fixture['keys'])
    state['stages.0.blocks.0.gate.weight'] = torch.empty(3, device='meta')
    with pytest.raises(WeightConversionError,
                       match=r'stages\.0\.blocks\.0\.gate\.weight'):
        convert_state_dict('timm', 'vovnet39a', state)


@pytest.mark.parametrize(
    'fixture_model, claimed, message',
    [
        # V1 weights lack the eSE the V2 model needs.
        ('timm-vovnet39a', 'ese_vovnet39b', r'no value for .*ese\.fc'),
        # 2 blocks in stage 3 are not the 4 of V-57.
        ('timm-ese_vovnet39b', 'ese_vovnet57b', r'does not have'),
        # Same keys, other widths.
        ('timm-repvgg_a0', 'repvgg_a1', r'shape mismatch'),
        # A classifier key alone is not enough to pass as another family.
        ('timm-efficientnet_b0', 'repvgg_a0', r'not part of a timm'),
    ])
def test_wrong_model_name_is_refused(fixture_model, claimed, message):
    fixture = load_fixture(osp.join(FIXTURE_DIR, f'{fixture_model}.json.gz'))
    with pytest.raises(WeightConversionError, match=message):
        convert_state_dict('timm', claimed, meta_state_dict(fixture['keys']))


def test_tf_efficientnet_and_unknown_names_are_refused():
    with pytest.raises(WeightConversionError, match="'SAME' padding"):
        convert_state_dict('timm', 'tf_efficientnet_b0', {})
    with pytest.raises(WeightConversionError, match='choose one of .*b3g4'):
        convert_state_dict('timm', 'repvgg_d2se', {})
    with pytest.raises(WeightConversionError, match='densenet121'):
        convert_state_dict('torchvision', 'densenet169', {})
    with pytest.raises(WeightConversionError, match='unknown source'):
        convert_state_dict('caffe', 'vovnet39a', {})


def test_safetensors_reader_matches_the_safetensors_package():
    # sample.safetensors was written by safetensors.torch.save_file.
    tensors = load_safetensors(osp.join(FIXTURE_DIR, 'sample.safetensors'))
    assert set(tensors) == {'a.float32', 'b.float16', 'c.bfloat16',
                            'd.num_batches_tracked', 'e.empty'}
    for key, shape, dtype in (('a.float32', (2, 3), torch.float32),
                              ('b.float16', (4, ), torch.float16),
                              ('c.bfloat16', (1, 2, 2), torch.bfloat16)):
        assert tensors[key].dtype == dtype
        assert torch.equal(tensors[key], synthetic_tensor(key, shape, dtype))
    assert tensors['d.num_batches_tracked'].dtype == torch.int64
    assert tensors['d.num_batches_tracked'].shape == ()
    assert tensors['d.num_batches_tracked'].item() == 7
    assert tensors['e.empty'].shape == (0, 5)


def test_convert_weights_tool_end_to_end(tmp_path):
    """A timm training checkpoint (DataParallel keys under 'state_dict')
    through the CLI, loaded by the documented Pretrained init_cfg."""
    fixture = load_fixture(
        osp.join(FIXTURE_DIR, 'timm-ese_vovnet19b_slim_dw.json.gz'))
    weights = synthetic_state_dict(shapes_of(fixture['keys']))
    source = tmp_path / 'ese_vovnet19b_slim_dw.pth'
    torch.save(dict(epoch=3, state_dict={f'module.{k}': v
                                         for k, v in weights.items()}),
               source)
    out = tmp_path / 'converted' / 'vovnet.pth'
    proc = subprocess.run(
        [sys.executable, TOOL, '--from', 'timm', '--model',
         'ese_vovnet19b_slim_dw', str(source), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'dropped (classifier): head.fc.weight, head.fc.bias' in proc.stdout

    checkpoint = torch.load(out, map_location='cpu', weights_only=True)
    backbone_cfg = checkpoint['meta']['backbone']
    expected_cfg = EXPECTED_BACKBONES[('timm', 'ese_vovnet19b_slim_dw')]
    assert backbone_cfg == expected_cfg
    assert checkpoint['meta']['dropped_keys'] == ['head.fc.weight',
                                                  'head.fc.bias']
    model = MODELS.build(
        dict(backbone_cfg,
             init_cfg=dict(type='Pretrained', checkpoint=str(out))))
    model.init_weights()
    with torch.no_grad():
        outputs = model.eval()(synthetic_input())
    assert_matches_recorded(outputs, fixture)


def test_convert_weights_tool_reports_errors(tmp_path, capsys):
    fixture = load_fixture(osp.join(FIXTURE_DIR, 'timm-vovnet39a.json.gz'))
    source = tmp_path / 'vovnet39a.pth'
    torch.save(synthetic_state_dict(shapes_of(fixture['keys'])), source)
    tool = runpy.run_path(TOOL)  # not __main__: defines main() only
    out = tmp_path / 'out.pth'
    with pytest.raises(SystemExit) as exit_info:
        tool['main'](['--from', 'timm', '--model', 'ese_vovnet39b',
                      str(source), str(out)])
    assert exit_info.value.code == 1
    # V1 weights have no eSE: 4 stages x (weight, bias) of the last module.
    assert capsys.readouterr().err.startswith(
        'error: the checkpoint has no value for 8 weights')
    assert not osp.exists(out)
    with pytest.raises(SystemExit):
        tool['main'](['--from', 'timm', '--model', 'vovnet39a',
                      str(tmp_path / 'missing.pth'), str(out)])
    assert "does not exist" in capsys.readouterr().err


def test_load_source_state_dict_unwraps_and_rejects(tmp_path):
    path = tmp_path / 'model.pth'
    tensor = torch.ones(2)
    torch.save(dict(model={'module.a.weight': tensor}), path)
    loaded = load_source_state_dict(str(path))
    assert list(loaded) == ['a.weight']
    assert torch.equal(loaded['a.weight'], tensor)
    torch.save(dict(epoch=1, weights=[tensor]), path)
    with pytest.raises(WeightConversionError, match='is not a state dict'):
        load_source_state_dict(str(path))
