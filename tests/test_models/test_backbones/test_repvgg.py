import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from tests.helpers import randomize_norms
from vovdet.models.backbones.repvgg import (GROUPWISE_LAYERS, RepVGGBlock,
                                            identity_kernel,
                                            repvgg_fused_kernel_bias)

# Paper Table 4 "Params (M)": the deploy-time model with a 1000-class FC
# (paper_specs.md §5). The deploy convs carry biases the paper does not
# count, which is worth < 0.01M.
PAPER_PARAMS_M = {
    'A0': 8.30, 'A1': 12.78, 'A2': 25.49, 'B0': 14.33, 'B1': 51.82,
    'B1g2': 41.36, 'B1g4': 36.12, 'B2': 80.31, 'B2g4': 55.77, 'B3': 110.96,
}
# Train-time (three-branch) params with the FC, paper_specs.md §5 [C].
TRAIN_PARAMS_M = {
    'A0': 9.11, 'A1': 14.09, 'A2': 28.21, 'B0': 15.82, 'B1': 57.42,
    'B1g2': 45.78, 'B1g4': 39.97, 'B2': 89.02, 'B2g4': 61.76, 'B3': 123.09,
    'B3g4': 83.83,
}
ALL_ARCHS = sorted(TRAIN_PARAMS_M)
# stage1..stage4 widths 64a, 128a, 256a, 512b.
STAGE_CHANNELS = {
    'A0': (48, 96, 192, 1280), 'A1': (64, 128, 256, 1280),
    'A2': (96, 192, 384, 1408), 'B0': (64, 128, 256, 1280),
    'B1': (128, 256, 512, 2048), 'B1g2': (128, 256, 512, 2048),
    'B1g4': (128, 256, 512, 2048), 'B2': (160, 320, 640, 2560),
    'B2g4': (160, 320, 640, 2560), 'B3': (192, 384, 768, 2560),
    'B3g4': (192, 384, 768, 2560),
}


def build(**kwargs):
    return MODELS.build(dict(type='RepVGG', **kwargs))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def build_random(**kwargs):
    """Build on the meta device, then fill all weights randomly.

    Much faster than the default initialisation for the 100M-parameter
    archs; conv weights are Kaiming-uniform so activations stay O(1).
    """
    with torch.device('meta'):
        model = build(**kwargs)
    model.to_empty(device='cpu')
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                bound = (6 / m.weight[0].numel())**0.5
                m.weight.uniform_(-bound, bound)
            elif isinstance(m, _BatchNorm):
                m.num_batches_tracked.zero_()
    randomize_norms(model)
    return model


def assert_relative_close(actual, expected, rtol=1e-4):
    scale = expected.abs().max()
    assert scale > 0
    error = (actual - expected).abs().max() / scale
    assert error <= rtol, f'relative error {error:.2e} > {rtol:.0e}'


def with_fc_head(model, arch):
    return num_params(model) + STAGE_CHANNELS[arch][-1] * 1000 + 1000


@pytest.mark.parametrize('arch', sorted(PAPER_PARAMS_M))
def test_repvgg_deploy_params_match_paper(arch):
    with torch.device('meta'):
        model = build(arch=arch, deploy=True)
    assert all(m.deploy for m in model.modules()
               if isinstance(m, RepVGGBlock))
    params = with_fc_head(model, arch)
    assert abs(params / 1e6 - PAPER_PARAMS_M[arch]) < 0.01


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_repvgg_train_params_match_analytic_count(arch):
    with torch.device('meta'):
        model = build(arch=arch)
    assert with_fc_head(model, arch) / 1e6 == pytest.approx(
        TRAIN_PARAMS_M[arch], abs=0.005)


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_repvgg_deploy_equivalent(arch):
    model = build_random(arch=arch).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert model.deploy
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert len(before) == len(after) == 4
    for a, b in zip(after, before):
        assert a.shape == b.shape
        assert_relative_close(a, b)


@pytest.mark.parametrize('in_channels,out_channels,stride,groups', [
    (8, 8, 1, 1),    # identity branch
    (8, 16, 2, 1),   # stage-opening block
    (8, 16, 1, 1),   # stride 1, no identity (channels change)
    (8, 8, 2, 1),    # stride 2, same channels, no identity
    (16, 16, 1, 2),  # grouped with identity (B*g2)
    (16, 16, 1, 4),  # grouped with identity (B*g4)
    (16, 32, 2, 4),  # grouped, stride 2
])
def test_repvgg_block_deploy_equivalent(in_channels, out_channels, stride,
                                        groups):
    block = RepVGGBlock(in_channels, out_channels, stride=stride,
                        groups=groups)
    assert (block.branch_identity is not None) == (
        stride == 1 and in_channels == out_channels)
    randomize_norms(block)
    block.eval()
    x = torch.randn(2, in_channels, 12, 12)
    with torch.no_grad():
        before = block(x)
        block.switch_to_deploy()
        after = block(x)
    assert block.fused_conv.groups == groups
    assert block.fused_conv.bias is not None
    assert_relative_close(after, before)


def test_repvgg_syncbn_folds_like_bn():
    block = RepVGGBlock(8, 8, norm_cfg=dict(type='SyncBN'))
    assert isinstance(block.branch_identity, nn.SyncBatchNorm)
    randomize_norms(block)
    block.eval()
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        before = block(x)
        block.switch_to_deploy()
        after = block(x)
    assert_relative_close(after, before)


def test_fused_kernel_bias_is_pure():
    block = RepVGGBlock(8, 8, groups=2)
    randomize_norms(block)
    state = {k: v.clone() for k, v in block.state_dict().items()}
    weight, bias = repvgg_fused_kernel_bias(block)
    again, again_bias = repvgg_fused_kernel_bias(block)
    assert weight.shape == (8, 4, 3, 3) and bias.shape == (8, )
    assert torch.equal(weight, again) and torch.equal(bias, again_bias)
    assert not weight.requires_grad
    assert not block.deploy and hasattr(block, 'branch_3x3')
    for k, v in block.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize('groups', [1, 2, 4])
def test_identity_kernel_reproduces_input(groups):
    x = torch.randn(1, 8, 5, 5)
    kernel = identity_kernel(8, groups)
    out = nn.functional.conv2d(x, kernel, padding=1, groups=groups)
    assert torch.equal(out, x)


def test_switch_to_deploy_is_idempotent_and_deletes_branches():
    model = build(arch='A0')
    randomize_norms(model)
    model.eval()
    model.switch_to_deploy()
    fused = {k: v.clone() for k, v in model.state_dict().items()}
    model.switch_to_deploy()
    model.stage1[0].switch_to_deploy()
    assert model.state_dict().keys() == fused.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fused[k]), k
    for block in [m for m in model.modules() if isinstance(m, RepVGGBlock)]:
        assert block.deploy
        for branch in ('branch_3x3', 'branch_1x1', 'branch_identity'):
            assert not hasattr(block, branch)
    assert all(k.split('.')[-2] == 'fused_conv' for k in fused)


def test_deploy_checkpoint_loads_into_deploy_model(tmp_path):
    trained = build_random(arch='B1g2', out_indices=(3, )).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = trained(x)[0]
    trained.switch_to_deploy()
    path = tmp_path / 'repvgg_b1g2_deploy.pth'
    torch.save(trained.state_dict(), path)

    deployed = build(arch='B1g2', out_indices=(3, ), deploy=True).eval()
    state = torch.load(path, weights_only=True)
    deployed.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = deployed(x)[0]
    assert_relative_close(out, expected)
    # A train-time model cannot silently load deploy weights.
    with torch.device('meta'):
        train_time = build(arch='B1g2')
    with pytest.raises(RuntimeError, match='fused_conv'):
        train_time.load_state_dict(state, strict=True)


def test_groupnorm_cannot_be_deployed():
    model = build(arch='A0',
                  norm_cfg=dict(type='GN', num_groups=16, requires_grad=True))
    model.eval()
    with pytest.raises(ValueError) as err:
        model.switch_to_deploy()
    msg = str(err.value)
    assert 'GroupNorm' in msg and "'stem.branch_3x3.gn'" in msg
    assert 'SyncBN' in msg
    # Nothing was converted.
    assert not model.deploy
    assert all(not m.deploy and hasattr(m, 'branch_3x3')
               for m in model.modules() if isinstance(m, RepVGGBlock))


def test_groupnorm_refused_at_block_level():
    block = RepVGGBlock(
        16, 16, norm_cfg=dict(type='GN', num_groups=4))
    with pytest.raises(ValueError, match=r"'branch_3x3\.gn' \(GroupNorm\)"):
        block.switch_to_deploy()


@pytest.mark.parametrize('arch', ['B1g2', 'B2g4'])
def test_groupwise_layers(arch):
    groups = int(arch[-1])
    with torch.device('meta'):
        model = build(arch=arch)
    blocks = [model.stem] + [
        b for i in range(1, 5) for b in getattr(model, f'stage{i}')
    ]
    assert len(blocks) == 28
    grouped = [i for i, b in enumerate(blocks)
               if b.branch_3x3.conv.groups == groups]
    assert grouped == list(range(2, 27, 2)) == list(GROUPWISE_LAYERS)
    assert all(b.branch_1x1.conv.groups == b.branch_3x3.conv.groups
               for b in blocks)


@pytest.mark.parametrize('arch', ['A0', 'B0'])
def test_every_stage_starts_with_stride2_block(arch):
    with torch.device('meta'):
        model = build(arch=arch)
    assert model.stem.branch_3x3.conv.stride == (2, 2)
    for i in range(1, 5):
        strides = [b.branch_3x3.conv.stride[0]
                   for b in getattr(model, f'stage{i}')]
        assert strides == [2] + [1] * (len(strides) - 1)
    num_blocks = [len(getattr(model, f'stage{i}')) for i in range(1, 5)]
    assert num_blocks == ([2, 4, 14, 1] if arch == 'A0' else [4, 6, 16, 1])


@pytest.mark.parametrize('arch', ['A0', 'B1'])
def test_output_shapes_and_channels(arch):
    model = build(arch=arch).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert model.out_channels == STAGE_CHANNELS[arch]
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 64 // s)
        for c, s in zip(STAGE_CHANNELS[arch], (4, 8, 16, 32))
    ]


@pytest.mark.parametrize('out_indices', [(0, ), (1, 3)])
def test_out_indices(out_indices):
    model = build(arch='A0', out_indices=out_indices).eval()
    outs = model(torch.rand(1, 3, 64, 64))
    assert len(outs) == len(out_indices)
    assert model.out_channels == tuple(STAGE_CHANNELS['A0'][i]
                                       for i in out_indices)
    for out, i in zip(outs, out_indices):
        assert out.shape[1] == STAGE_CHANNELS['A0'][i]
        assert out.shape[-1] == 64 // (4 * 2**i)


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        build(arch='B4')
    msg = str(err.value)
    assert "'B4'" in msg
    for name in ALL_ARCHS:
        assert name in msg


@pytest.mark.parametrize('kwargs', [
    dict(out_indices=(4, )),
    dict(out_indices=()),
    dict(frozen_stages=5),
    dict(frozen_stages=-2),
])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        build(arch='A0', **kwargs)


def _assert_frozen(model, frozen_stages):
    parts = [model.stem] + [getattr(model, f'stage{i}') for i in range(1, 5)]
    for i, part in enumerate(parts):
        frozen = i <= frozen_stages
        assert all(m.training != frozen for m in part.modules())
        assert all(p.requires_grad != frozen for p in part.parameters())


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = build(arch='A0', frozen_stages=frozen_stages)
    model.train()
    _assert_frozen(model, frozen_stages)
    # Re-parameterising keeps the freezing rule for the new fused convs.
    model.switch_to_deploy()
    model.train()
    _assert_frozen(model, frozen_stages)


def test_norm_eval_keeps_bn_in_eval():
    model = build(arch='A0', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    model = build(arch='A0', norm_eval=False)
    model.train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def test_with_cp_same_output_and_grads():
    plain = build(arch='A0')
    cp = build(arch='A0', with_cp=True)
    cp.load_state_dict(plain.state_dict())
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
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_init_weights_runs():
    model = build(arch='A0')
    model.init_weights()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(torch.all(m.weight == 1) for m in bns)
