import pytest
import torch
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from vovdet.models.layers import OSAModule

# Backbone-only parameter counts (paper_specs.md §1.4; V2 with eSE in every
# OSA module, as in the official CenterMask/vovnet-detectron2 code).
PAPER_PARAMS = {
    'V-27-slim': 3_012_736,
    'V-39': 21_575_296,
    'V-57': 35_615_296,
    'V2-19-slim-dw': 1_384_752,
    'V2-19-dw': 5_518_080,
    'V2-19-slim': 2_653_136,
    'V2-19': 10_180_416,
    'V2-39': 25_184_128,
    'V2-57': 41_454_912,
    'V2-99': 69_523_520,
}
OUT_CHANNELS = {
    'V-27-slim': (128, 256, 384, 512),
    'V2-19-slim-dw': (112, 256, 384, 512),
    'V2-19-slim': (112, 256, 384, 512),
}


def build(**kwargs):
    return MODELS.build(dict(type='VoVNet', **kwargs))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('arch', sorted(PAPER_PARAMS))
def test_vovnet_params_match_paper(arch):
    assert num_params(build(arch=arch)) == PAPER_PARAMS[arch]


@pytest.mark.parametrize('mode', ['pytorch', 'paper'])
def test_stem_stride_mode_keeps_params_and_strides(mode):
    model = build(arch='V-27-slim', stem_stride_mode=mode).eval()
    assert num_params(model) == PAPER_PARAMS['V-27-slim']
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]


def test_paper_stem_has_stride1_third_conv_and_pool_before_stage1():
    model = build(arch='V-39', stem_stride_mode='paper')
    assert model.stem[2].conv.stride == (1, 1)
    assert isinstance(model.stage1[0], torch.nn.MaxPool2d)
    pytorch = build(arch='V-39')
    assert pytorch.stem[2].conv.stride == (2, 2)
    assert not isinstance(pytorch.stage1[0], torch.nn.MaxPool2d)


def test_ese_placement_last_matches_timm_count():
    # timm's ese_vovnet39b (eSE only in a stage's last module): 24.57M with
    # the 1000-class FC (paper_specs.md §1.3) -> minus 1024*1000+1000.
    model = build(arch='V2-39', ese_placement='last')
    assert num_params(model) + 1024 * 1000 + 1000 == pytest.approx(
        24.57e6, abs=0.005e6)
    n_ese = sum(isinstance(m, OSAModule) and m.ese is not None
                for m in model.modules())
    assert n_ese == 4


def test_v1_has_no_ese_and_no_identity():
    model = build(arch='V-57')
    osa = [m for m in model.modules() if isinstance(m, OSAModule)]
    assert len(osa) == 1 + 1 + 4 + 3
    assert all(m.ese is None and not m.identity for m in osa)


def test_v2_identity_on_second_and_later_modules():
    model = build(arch='V2-39')
    stage4 = [m for m in model.stage4 if isinstance(m, OSAModule)]
    assert [m.identity for m in stage4] == [False, True]
    assert all(m.ese is not None for m in stage4)


def test_osa_concat_includes_input():
    model = build(arch='V-39')
    # stage 2: input 128 + 5 layers * 128 -> 256
    agg = model.stage1[0].aggregation.conv
    assert agg.in_channels == 128 + 5 * 128 and agg.out_channels == 256


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        build(arch='V-38')
    msg = str(err.value)
    assert "'V-38'" in msg
    for name in PAPER_PARAMS:
        assert name in msg


@pytest.mark.parametrize('kwargs', [
    dict(stem_stride_mode='caffe'),
    dict(ese_placement='first'),
    dict(out_indices=(4, )),
    dict(frozen_stages=5),
])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        build(arch='V-27-slim', **kwargs)


@pytest.mark.parametrize('arch', sorted(PAPER_PARAMS))
def test_output_shapes_and_channels(arch):
    model = build(arch=arch).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    channels = OUT_CHANNELS.get(arch, (256, 512, 768, 1024))
    assert model.out_channels == channels
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))
    ]


@pytest.mark.parametrize('out_indices', [(0, ), (1, 3), (2, 3)])
def test_out_indices(out_indices):
    model = build(arch='V2-19-slim', out_indices=out_indices).eval()
    outs = model(torch.rand(1, 3, 64, 64))
    all_channels = (112, 256, 384, 512)
    assert len(outs) == len(out_indices)
    for out, i in zip(outs, out_indices):
        assert out.shape[1] == all_channels[i]
        assert out.shape[-1] == 64 // (4 * 2**i)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = build(arch='V2-19-slim', frozen_stages=frozen_stages)
    model.train()
    stages = [model.stem] + [getattr(model, f'stage{i}') for i in range(1, 5)]
    frozen = stages[:frozen_stages + 1]
    trainable = stages[frozen_stages + 1:]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    for m in trainable:
        assert m.training
        assert all(p.requires_grad for p in m.parameters())


def test_norm_eval_keeps_bn_in_eval():
    model = build(arch='V2-19-slim', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    model = build(arch='V2-19-slim', norm_eval=False)
    model.train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('norm_cfg', [
    dict(type='GN', num_groups=16, requires_grad=True),
    dict(type='SyncBN', requires_grad=True),
    dict(type='BN', requires_grad=True),
])
def test_norm_types_build(norm_cfg):
    model = build(arch='V2-19-slim', norm_cfg=norm_cfg)
    norm_type = dict(GN=torch.nn.GroupNorm, SyncBN=torch.nn.SyncBatchNorm,
                     BN=torch.nn.BatchNorm2d)[norm_cfg['type']]
    assert any(isinstance(m, norm_type) for m in model.modules())
    if norm_cfg['type'] != 'SyncBN':  # SyncBN needs a process group to run
        model.eval()
        outs = model(torch.rand(1, 3, 64, 64))
        assert outs[-1].shape == (1, 512, 2, 2)


def test_with_cp_same_output_and_grads():
    torch.manual_seed(0)
    plain = build(arch='V2-19-slim-dw')
    cp = build(arch='V2-19-slim-dw', with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
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


def test_dw_variant_layout():
    model = build(arch='V2-19-slim-dw')
    module = model.stage1[0]
    # in 64 != mid 64 is false for stage1, stage2 has 112 -> 80 reduction
    assert module.reduction is None
    assert model.stage2[1].reduction.conv.kernel_size == (1, 1)
    dw = module.layers[0].depthwise_conv
    assert dw.conv.groups == 64 and dw.norm_cfg is None
    assert dw.conv.bias is None


def test_init_weights_runs():
    model = build(arch='V-27-slim')
    model.init_weights()
    gn = build(arch='V-27-slim',
               norm_cfg=dict(type='GN', num_groups=16, requires_grad=True))
    gn.init_weights()
    assert all(
        torch.all(m.weight == 1) for m in gn.modules()
        if isinstance(m, torch.nn.GroupNorm))


@pytest.mark.parametrize('arch', ['V-39', 'V-57'])
def test_v1_identity_shortcut_option_keeps_paper_params(arch):
    # VoVNet-Detectron's `_OSA_stage` (maskrcnn_benchmark/modeling/backbone/
    # vovnet.py) builds OSA modules 2..n with identity=True: same weights.
    plain, shortcut = build(arch=arch), build(arch=arch, residual=True)
    assert num_params(shortcut) == num_params(plain) == PAPER_PARAMS[arch]
    assert not plain.residual and shortcut.residual
    for stage in (shortcut.stage3, shortcut.stage4):
        modules = [m for m in stage if isinstance(m, OSAModule)]
        assert [m.identity for m in modules] == [False] + [True] * (
            len(modules) - 1)
    assert not any(m.identity for m in plain.modules()
                   if isinstance(m, OSAModule))


def test_identity_shortcut_changes_the_output():
    torch.manual_seed(0)
    plain = build(arch='V-39').eval()
    shortcut = build(arch='V-39', residual=True).eval()
    shortcut.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    out_plain, out_shortcut = plain(x), shortcut(x)
    # stages 1-2 have one module each (no shortcut); stages 3-4 have two
    assert torch.equal(out_plain[1], out_shortcut[1])
    assert not torch.allclose(out_plain[3], out_shortcut[3])


def test_v2_residual_can_be_switched_off():
    assert not any(m.identity for m in build(arch='V2-39', residual=False)
                   .modules() if isinstance(m, OSAModule))
