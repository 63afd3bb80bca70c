import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from vovdet.models.backbones.densenet import DenseLayer

# Params without the classifier (torchvision densenet121/161/201 layout).
REFERENCE_PARAMS = {'121': 6_953_856, '161': 26_472_000, '201': 18_092_928}
# Each stage output is a dense block's concat: c_in + layers * growth.
STAGE_CHANNELS = {
    '121': (256, 512, 1024, 1024),
    '161': (384, 768, 2112, 2208),
    '201': (256, 512, 1792, 1920),
}


def build(**kwargs):
    return MODELS.build(dict(type='DenseNet', **kwargs))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('arch', sorted(REFERENCE_PARAMS))
def test_densenet_params_match_torchvision(arch):
    with torch.device('meta'):
        model = build(arch=arch)
    assert num_params(model) == REFERENCE_PARAMS[arch]
    assert model.out_channels == STAGE_CHANNELS[arch]


@pytest.mark.parametrize('arch', sorted(REFERENCE_PARAMS))
def test_torchvision_layout(arch):
    with torch.device('meta'):
        model = build(arch=arch)
    growth = 48 if arch == '161' else 32
    stem_conv = model.stem.conv
    assert stem_conv.kernel_size == (7, 7) and stem_conv.stride == (2, 2)
    assert stem_conv.out_channels == (96 if arch == '161' else 64)
    assert isinstance(model.stem.pool, nn.MaxPool2d)
    assert not hasattr(model.stage1, 'transition')
    layers = {'121': (6, 12, 24, 16), '161': (6, 12, 36, 24),
              '201': (6, 12, 48, 32)}[arch]
    in_channels = model.stem.conv.out_channels
    for i, num_layers in enumerate(layers):
        stage = getattr(model, f'stage{i + 1}')
        if i > 0:
            transition = stage.transition
            assert [type(m) for m in transition] == [
                nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.AvgPool2d]
            assert transition.conv.in_channels == in_channels
            assert transition.conv.out_channels == in_channels // 2
            in_channels //= 2
        dense_layers = list(stage.denseblock.values())
        assert len(dense_layers) == num_layers
        assert all(isinstance(m, DenseLayer) for m in dense_layers)
        assert dense_layers[0].conv1.out_channels == 4 * growth
        assert dense_layers[-1].conv2.out_channels == growth
        assert dense_layers[-1].conv1.in_channels == (
            in_channels + (num_layers - 1) * growth)
        in_channels += num_layers * growth
    assert isinstance(model.stage4.norm, nn.BatchNorm2d)
    assert model.stage4.norm.num_features == in_channels


def test_output_shapes():
    model = build(arch='121').eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 64 // s)
        for c, s in zip(STAGE_CHANNELS['121'], (4, 8, 16, 32))
    ]


def test_last_stage_output_is_final_norm():
    model = build(arch='121', out_indices=(3, )).eval()
    captured = []
    model.stage4.norm.register_forward_hook(
        lambda module, args, out: captured.append(out))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))[0]
    assert len(captured) == 1 and torch.equal(out, captured[0])


@pytest.mark.parametrize('out_indices', [(0, ), (1, 3)])
def test_out_indices(out_indices):
    model = build(arch='121', out_indices=out_indices).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert len(outs) == len(out_indices)
    assert model.out_channels == tuple(STAGE_CHANNELS['121'][i]
                                       for i in out_indices)
    for out, i in zip(outs, out_indices):
        assert out.shape[1] == STAGE_CHANNELS['121'][i]
        assert out.shape[-1] == 64 // (4 * 2**i)


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        build(arch='169x')
    msg = str(err.value)
    assert "'169x'" in msg
    for name in REFERENCE_PARAMS:
        assert name in msg


@pytest.mark.parametrize('kwargs', [
    dict(out_indices=(4, )),
    dict(out_indices=()),
    dict(frozen_stages=5),
])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        build(**kwargs)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = build(arch='121', frozen_stages=frozen_stages)
    model.train()
    parts = [model.stem] + [getattr(model, f'stage{i}') for i in range(1, 5)]
    for i, part in enumerate(parts):
        frozen = i <= frozen_stages
        assert all(m.training != frozen for m in part.modules())
        assert all(p.requires_grad != frozen for p in part.parameters())


def test_norm_eval_keeps_bn_in_eval():
    model = build(arch='121', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    model = build(arch='121', norm_eval=False)
    model.train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def test_gn_norm_cfg():
    model = build(arch='121',
                  norm_cfg=dict(type='GN', num_groups=16, requires_grad=True))
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert isinstance(model.stage2.transition.norm, nn.GroupNorm)
    with torch.no_grad():
        outs = model.eval()(torch.rand(1, 3, 32, 32))
    assert outs[-1].shape == (1, 1024, 1, 1)


def test_with_cp_same_output_and_grads():
    plain = build(arch='121')
    cp = build(arch='121', with_cp=True)
    cp.load_state_dict(plain.state_dict())
    assert all(m.with_cp for m in cp.modules() if isinstance(m, DenseLayer))
    x = torch.rand(2, 3, 32, 32)
    plain.train()
    cp.train()
    out_plain = plain(x.clone().requires_grad_())
    out_cp = cp(x.clone().requires_grad_())
    for a, b in zip(out_plain, out_cp):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in out_plain).backward()
    sum(o.sum() for o in out_cp).backward()
    for (name, p), q in zip(plain.named_parameters(), cp.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    # The backward recomputation must not update BN statistics again.
    for (name, a), b in zip(plain.named_buffers(), cp.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    assert cp.stage1.denseblock.denselayer2.norm1.num_batches_tracked == 1


def test_with_cp_recomputes_the_bottleneck():
    """The concat + BN-ReLU-conv1x1 runs again during backward."""
    layer = DenseLayer(16, 8, bn_size=4, norm_cfg=dict(type='BN'),
                       with_cp=True)
    calls = []
    layer.norm1.register_forward_hook(lambda *args: calls.append(1))
    features = [torch.rand(2, 8, 6, 6, requires_grad=True) for _ in range(2)]
    layer(features).sum().backward()
    assert len(calls) == 2
    layer.with_cp = False
    calls.clear()
    layer(features).sum().backward()
    assert len(calls) == 1


def test_init_weights_runs():
    model = build(arch='121')
    model.init_weights()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(torch.all(m.weight == 1) for m in bns)


def test_transition_taps_share_the_weights_of_the_block_taps():
    torch.manual_seed(0)
    block = build(arch='121').eval()
    tap = build(arch='121', out_type='transition').eval()
    tap.load_state_dict(block.state_dict())
    assert tap.out_channels == (128, 256, 512, 1024)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        block_outs = block(x)
        tap_outs = tap(x)
    # a tap at stride s is the next transition's 1x1 conv, before pooling
    for i in range(3):
        transition = getattr(block, f'stage{i + 2}').transition
        with torch.no_grad():
            expected = transition.conv(
                transition.relu(transition.norm(block_outs[i].clone())))
        assert tap_outs[i].shape == expected.shape
        assert tap_outs[i].shape[-1] == block_outs[i].shape[-1]
        torch.testing.assert_close(tap_outs[i], expected)
    torch.testing.assert_close(tap_outs[3], block_outs[3])
    # only the requested taps, in order
    tap.out_indices = (1, 3)
    with torch.no_grad():
        outs = tap(x)
    assert [o.shape[1] for o in outs] == [256, 1024]


def test_unknown_out_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match='block, transition'):
        build(arch='121', out_type='pooled')
