import math

import pytest
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmdet.models.layers import InvertedResidual
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from vovdet.models.backbones.efficientnet import (ALPHA, B0_BLOCK_GROUPS,
                                                  BETA, GAMMA,
                                                  compound_scaling,
                                                  round_filters,
                                                  round_repeats)

# Params with the 1x1 head conv and a 1000-class FC (paper_specs.md §6 [C];
# equal to torchvision/timm).
PAPER_PARAMS = {
    'b0': 5_288_548, 'b1': 7_794_184, 'b2': 9_109_994, 'b3': 12_233_232,
    'b4': 19_341_616, 'b5': 30_389_784, 'b6': 43_040_704, 'b7': 66_347_960,
}
# (stem, MBConv group channels, head), paper_specs.md §6 "computed
# structure"; b1 has b0's widths.
CHANNELS = {
    1.0: (32, (16, 24, 40, 80, 112, 192, 320), 1280),
    1.1: (32, (16, 24, 48, 88, 120, 208, 352), 1408),
    1.2: (40, (24, 32, 48, 96, 136, 232, 384), 1536),
    1.4: (48, (24, 32, 56, 112, 160, 272, 448), 1792),
    1.6: (48, (24, 40, 64, 128, 176, 304, 512), 2048),
    1.8: (56, (32, 40, 72, 144, 200, 344, 576), 2304),
    2.0: (64, (32, 48, 80, 160, 224, 384, 640), 2560),
}
TOTAL_BLOCKS = {'b0': 16, 'b1': 23, 'b2': 23, 'b3': 26, 'b4': 32, 'b5': 39,
                'b6': 45, 'b7': 55}


def build(**kwargs):
    return MODELS.build(dict(type='VoVDetEfficientNet', **kwargs))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def mbconv_blocks(model):
    return [m for m in model.modules() if isinstance(m, InvertedResidual)]


@pytest.mark.parametrize('arch', sorted(PAPER_PARAMS))
def test_efficientnet_params_match_reference(arch):
    with torch.device('meta'):
        model = build(arch=arch, with_head_conv=True)
    head_channels = model.out_channels[-1]
    fc_params = head_channels * 1000 + 1000
    assert num_params(model) + fc_params == PAPER_PARAMS[arch]
    assert len(mbconv_blocks(model)) == TOTAL_BLOCKS[arch]


@pytest.mark.parametrize('width', sorted(CHANNELS))
def test_round_filters_gives_reference_widths(width):
    stem, groups, head = CHANNELS[width]
    assert round_filters(32, width) == stem
    assert tuple(round_filters(g.out_channels, width)
                 for g in B0_BLOCK_GROUPS) == groups
    assert round_filters(1280, width) == head


def test_round_filters_rules():
    assert round_filters(16, 1.0) == 16
    # never below the divisor
    assert round_filters(16, 0.1) == 8
    # nearest multiple of 8: 20 * 1.1 = 22 -> 24, 36 * 1.1 = 39.6 -> 40
    assert round_filters(20, 1.1) == 24
    assert round_filters(36, 1.1) == 40
    # 119 * 0.1 = 11.9 rounds to 8, which loses > 10%: add 8
    assert round_filters(119, 0.1) == 16
    assert round_filters(100, 1.0, divisor=16) == 96


def test_round_repeats():
    assert [round_repeats(g.num_repeats, 1.1)
            for g in B0_BLOCK_GROUPS] == [2, 3, 3, 4, 4, 5, 2]
    assert [round_repeats(g.num_repeats, 3.1)
            for g in B0_BLOCK_GROUPS] == [4, 7, 7, 10, 10, 13, 4]
    assert round_repeats(3, 1.0) == 3
    assert round_repeats(2, 1.5) == 3


def test_arch_coefficients_are_the_official_ones():
    model = build(arch='b3')
    assert tuple(model.scaling) == (1.2, 1.4, 300, 0.3)
    assert model.arch == 'b3' and model.phi is None
    assert build().arch == 'b0'


@pytest.mark.parametrize('phi', [0, 1, 2, 3])
def test_phi_gives_compound_multipliers(phi):
    scaling = compound_scaling(phi)
    assert scaling.width_factor == pytest.approx(1.1**phi)
    assert scaling.depth_factor == pytest.approx(1.2**phi)
    assert scaling.resolution == round(224 * 1.15**phi)
    assert scaling.dropout is None
    with torch.device('meta'):
        model = build(phi=phi)
    assert model.scaling == scaling and model.phi == phi
    expected_blocks = sum(
        math.ceil(1.2**phi * g.num_repeats) for g in B0_BLOCK_GROUPS)
    assert len(mbconv_blocks(model)) == expected_blocks
    assert model.stem.conv.out_channels == round_filters(32, 1.1**phi)


def test_phi_constants_satisfy_flops_constraint():
    assert (ALPHA, BETA, GAMMA) == (1.2, 1.1, 1.15)
    # alpha * beta^2 * gamma^2 ~ 2 (paper Eq. 3): FLOPs double per phi.
    assert ALPHA * BETA**2 * GAMMA**2 == pytest.approx(2, abs=0.1)
    assert compound_scaling(1) == (1.1, 1.2, 258, None)
    assert compound_scaling(2).resolution == 296


@pytest.mark.parametrize('kwargs', [
    dict(arch='b8'),
    dict(arch='b1', phi=1),
    dict(phi=-1),
    dict(phi=1.5),
    dict(out_indices=(4, )),
    dict(frozen_stages=5),
])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        build(**kwargs)


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        build(arch='B0')
    msg = str(err.value)
    assert "'B0'" in msg
    for name in PAPER_PARAMS:
        assert name in msg


def test_b0_block_layout():
    model = build(arch='b0')
    blocks = mbconv_blocks(model)
    first = blocks[0]  # MBConv1, k3, 32 -> 16
    assert not first.with_expand_conv
    assert first.depthwise_conv.conv.kernel_size == (3, 3)
    assert first.se.conv1.conv.out_channels == 8  # 0.25 * 32
    assert not first.with_res_shortcut
    second = blocks[1]  # MBConv6, k3, s2, 16 -> 24, expanded 96
    assert second.expand_conv.conv.out_channels == 96
    assert second.depthwise_conv.conv.stride == (2, 2)
    # SE width from the block *input* (16), not the expanded width (96)
    assert second.se.conv1.conv.out_channels == 4
    assert second.se.conv1.conv.bias is not None
    third = blocks[2]  # 24 -> 24, stride 1: residual
    assert third.with_res_shortcut
    assert third.se.conv1.conv.out_channels == 6
    assert [b.depthwise_conv.conv.kernel_size[0] for b in blocks] == [
        3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3
    ]
    assert isinstance(first.depthwise_conv.activate, nn.SiLU)
    assert isinstance(first.se.conv1.activate, nn.SiLU)
    assert first.linear_conv.with_activation is False
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            assert m.momentum == 0.01 and m.eps == 1e-3


def test_drop_path_grows_linearly_with_block_index():
    model = build(arch='b0', drop_path_rate=0.2)
    blocks = mbconv_blocks(model)
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath)
             else 0.0 for b in blocks]
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])
    assert isinstance(blocks[0].drop_path, nn.Identity)


@pytest.mark.parametrize('with_head_conv,last', [(False, 320), (True, 1280)])
def test_output_shapes_and_channels(with_head_conv, last):
    model = build(arch='b0', with_head_conv=with_head_conv).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    channels = (24, 40, 112, last)
    assert model.out_channels == channels
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))
    ]


def test_b3_stage_channels():
    with torch.device('meta'):
        model = build(arch='b3')
    assert model.out_channels == (32, 48, 136, 384)


@pytest.mark.parametrize('out_indices', [(0, ), (1, 3)])
def test_out_indices(out_indices):
    model = build(arch='b0', out_indices=out_indices).eval()
    outs = model(torch.rand(1, 3, 64, 64))
    all_channels = (24, 40, 112, 320)
    assert len(outs) == len(out_indices)
    for out, i in zip(outs, out_indices):
        assert out.shape[1] == all_channels[i]
        assert out.shape[-1] == 64 // (4 * 2**i)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = build(arch='b0', frozen_stages=frozen_stages)
    model.train()
    parts = [model.stem] + [getattr(model, f'stage{i}') for i in range(1, 5)]
    for i, part in enumerate(parts):
        frozen = i <= frozen_stages
        assert all(m.training != frozen for m in part.modules())
        assert all(p.requires_grad != frozen for p in part.parameters())


def test_norm_eval_keeps_bn_in_eval():
    model = build(arch='b0', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    model = build(arch='b0', norm_eval=False)
    model.train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def test_with_cp_same_output_and_grads():
    plain = build(arch='b0', drop_path_rate=0.0)
    cp = build(arch='b0', drop_path_rate=0.0, with_cp=True)
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
    model = build(arch='b0')
    model.init_weights()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(torch.all(m.weight == 1) for m in bns)
