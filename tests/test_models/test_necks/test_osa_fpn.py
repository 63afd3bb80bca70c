"""OSA-FPN / OSA-PAFPN: drop-in for mmdet's FPN, fusion by CSP-OSA modules,
GN, depthwise and RepVGG variants (folded exactly, found by the inference
tools), and the configs that use them."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmdet.models.layers import ChannelAttention
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from tests.helpers import randomize_norms
from vovdet.deploy import (ReparameterizationError, deployable_modules,
                           mark_deploy, max_relative_difference,
                           reparameterize_model, reparameterize_state_dict,
                           to_inference_form)
from vovdet.models.layers import OSAModule, RepVGGBlock
from vovdet.models.necks import OSAFPN, OSAPAFPN

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
IN_CHANNELS = [8, 16, 24, 32]
SIZES = [32, 16, 8, 4]  # a 128 px image at strides 4..32
OUT = 16
OSA_TYPES = ['OSAFPN', 'OSAPAFPN']


def feats(requires_grad=False):
    return [torch.rand(2, c, s, s, requires_grad=requires_grad)
            for c, s in zip(IN_CHANNELS, SIZES)]


def build(neck_type, **kwargs):
    cfg = dict(type=neck_type, in_channels=IN_CHANNELS, out_channels=OUT)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_registered_in_mmdet_models():
    assert MODELS.get('OSAFPN') is OSAFPN
    assert MODELS.get('OSAPAFPN') is OSAPAFPN
    assert issubclass(OSAPAFPN, OSAFPN)


# (num_outs, start_level, end_level, add_extra_convs, relu_before_extra)
FPN_CASES = [
    (4, 0, -1, False, False),
    (5, 0, -1, False, False),  # one max-pooled extra level (Mask R-CNN)
    (6, 0, -1, False, False),
    (5, 1, -1, 'on_input', False),  # RetinaNet
    (5, 1, -1, True, False),
    (5, 1, -1, 'on_lateral', False),
    (5, 1, -1, 'on_output', True),  # FCOS
    (6, 0, -1, 'on_output', False),
    (2, 1, 2, False, False),  # end_level before the last level
    (3, 0, 2, 'on_input', False),  # end_level set: extra convs never built
]


@pytest.mark.parametrize('neck_type', OSA_TYPES)
@pytest.mark.parametrize('case', FPN_CASES, ids=str)
def test_outputs_match_fpn(neck_type, case):
    num_outs, start, end, extra, relu = case
    kwargs = dict(num_outs=num_outs, start_level=start, end_level=end,
                  add_extra_convs=extra, relu_before_extra_convs=relu)
    fpn = build('FPN', **kwargs).eval()
    osa = build(neck_type, **kwargs).eval()
    inputs = feats()
    with torch.no_grad():
        expected = fpn(inputs)
        outs = osa(inputs)
    assert len(outs) == len(expected) == num_outs
    assert [o.shape for o in outs] == [e.shape for e in expected]
    # strides 4, 8, ... of a 128 px image, from the start level on
    strides = [128 // o.shape[-1] for o in outs]
    assert strides == [2**(2 + start + i) for i in range(num_outs)]


@pytest.mark.parametrize('neck_type', OSA_TYPES)
def test_odd_sizes_and_scale_factor_upsampling_match_fpn(neck_type):
    # sizes that do not halve exactly (an unpadded image through VoVNet's
    # ceil-mode pools): OSA-FPN resizes like FPN, OSA-PAFPN refuses clearly
    sizes = [(26, 42), (13, 21), (6, 10), (3, 5)]
    inputs = [torch.rand(1, c, *s) for c, s in zip(IN_CHANNELS, sizes)]
    fpn = build('FPN', num_outs=5).eval()
    osa = build(neck_type, num_outs=5).eval()
    with torch.no_grad():
        expected = [e.shape for e in fpn(inputs)]
        if neck_type == 'OSAPAFPN':
            with pytest.raises(ValueError, match='pad_size_divisor=32'):
                osa(inputs)
        else:
            assert [o.shape for o in osa(inputs)] == expected
    scaled = dict(num_outs=5, upsample_cfg=dict(scale_factor=2,
                                                mode='nearest'))
    with torch.no_grad():
        expected = [e.shape for e in build('FPN', **scaled).eval()(feats())]
        outs = build(neck_type, **scaled).eval()(feats())
    assert [o.shape for o in outs] == expected


@pytest.mark.parametrize('neck_type', OSA_TYPES)
@pytest.mark.parametrize('extra', [False, 'on_input', 'on_output'])
def test_gradients_reach_every_input_level(neck_type, extra):
    neck = build(neck_type, num_outs=6, add_extra_convs=extra,
                 norm_cfg=dict(type='GN', num_groups=4)).train()
    inputs = feats(requires_grad=True)
    sum(o.square().mean() for o in neck(inputs)).backward()
    for level, x in enumerate(inputs):
        assert x.grad is not None, f'no gradient to level {level}'
        assert x.grad.abs().sum() > 0, f'zero gradient at level {level}'
    for name, p in neck.named_parameters():
        assert p.grad is not None, f'{name} got no gradient'


def test_unused_start_levels_get_no_gradient():
    neck = build('OSAFPN', num_outs=3, start_level=1).train()
    inputs = feats(requires_grad=True)
    sum(o.sum() for o in neck(inputs)).backward()
    assert inputs[0].grad is None
    assert all(x.grad.abs().sum() > 0 for x in inputs[1:])


def test_topology_csp_split_then_one_osa_module_per_level():
    neck = build('OSAFPN', num_outs=4, expand_ratio=0.5, module_channels=12,
                 layers_per_module=3)
    mid = OUT // 2
    # the fusion input: a 1x1 conv-norm of each backbone map and of each
    # coarser output to 2 * mid channels, activated after their sum
    for conv, c_in in zip(neck.lateral_convs, IN_CHANNELS):
        assert (conv.conv.in_channels, conv.conv.out_channels) == \
            (c_in, 2 * mid)
        assert conv.conv.kernel_size == (1, 1) and conv.with_norm
        assert not conv.with_activation
    assert len(neck.top_down_convs) == 3
    assert all((c.conv.in_channels, c.conv.out_channels) == (OUT, 2 * mid)
               for c in neck.top_down_convs)
    for m in neck.top_down_modules:
        assert isinstance(m, OSAModule)
        # CSP split: half the input bypasses the 3x3 layers
        assert m.bypass_channels == mid
        assert m.layers[0].conv.in_channels == mid
        assert [layer.conv.out_channels for layer in m.layers] == [12] * 3
        # every 3x3 after the first has c_in = c_out
        assert all(layer.conv.in_channels == 12 for layer in m.layers[1:])
        assert all(layer.conv.kernel_size == (3, 3) for layer in m.layers)
        # one aggregation of the module input and all layer outputs
        agg = m.aggregation.conv
        assert agg.kernel_size == (1, 1)
        assert (agg.in_channels, agg.out_channels) == (2 * mid + 3 * 12, OUT)
        assert m.reduction is None and m.ese is None and not m.identity


def test_top_down_projection_runs_before_the_upsampling():
    # W [C_i; up(P)] = W_l C_i + up(W_t P): the coarser map is projected at
    # its own resolution, a quarter of the pixels of the finer level
    neck = build('OSAFPN', num_outs=4).eval()
    seen = []
    handles = [conv.register_forward_hook(
        lambda m, args, out: seen.append(tuple(args[0].shape[2:])))
        for conv in neck.top_down_convs]
    with torch.no_grad():
        neck(feats())
    for handle in handles:
        handle.remove()
    assert sorted(seen) == [(s, s) for s in sorted(SIZES[1:])]


def test_fusion_equals_a_1x1_conv_of_the_concatenation():
    # The fusion input of level 0 is act(norm(W_l C_0) + up(norm(W_t P_1))):
    # with identity norms it is ReLU of one 1x1 conv over [C_0; up(P_1)].
    neck = build('OSAFPN', num_outs=4).eval()
    inputs = feats()
    captured = {}
    neck.top_down_modules[0].register_forward_hook(
        lambda m, args, out: captured.setdefault('x', args[0]))
    neck.top_down_modules[1].register_forward_hook(
        lambda m, args, out: captured.setdefault('p1', out))
    with torch.no_grad():
        neck(inputs)
        p1 = captured['p1']
        weight = torch.cat([neck.lateral_convs[0].conv.weight,
                            neck.top_down_convs[0].conv.weight], 1)
        concat = torch.cat([inputs[0], nn.functional.interpolate(
            p1, size=SIZES[0])], 1)
        expected = torch.relu(nn.functional.conv2d(concat, weight))
    # default BN in eval: running mean 0, var 1, weight 1, bias 0
    torch.testing.assert_close(captured['x'], expected, rtol=1e-4,
                               atol=1e-4)


def test_default_widths_are_3_8_of_the_neck_c_in_c_out_and_two_layers():
    # the defaults chosen by quiet-machine latency (docs/necks.md)
    neck = MODELS.build(dict(type='OSAFPN', in_channels=[256, 512, 768, 1024],
                             out_channels=256, num_outs=5))
    assert neck.mid_channels == neck.module_channels == 96
    assert neck.layers_per_module == 2
    for m in neck.top_down_modules:
        assert m.aggregation.conv.in_channels == 2 * 96 + 2 * 96
        assert [(layer.conv.in_channels, layer.conv.out_channels)
                for layer in m.layers] == [(96, 96), (96, 96)]
    pafpn = MODELS.build(dict(type='OSAPAFPN', in_channels=[256, 512],
                              out_channels=256, num_outs=2))
    assert pafpn.bottom_up == 'pan'


@pytest.mark.parametrize('out,groups,mid', [(256, 32, 96), (128, 16, 48),
                                            (128, 32, 32)])
def test_mid_is_rounded_to_group_norm_groups(out, groups, mid):
    gn = dict(type='GN', num_groups=groups)
    neck = build('OSAPAFPN', out_channels=out, num_outs=4, norm_cfg=gn,
                 bottom_up='osa')
    assert neck.mid_channels == neck.module_channels == mid
    assert all(m.num_channels % groups == 0 for m in neck.modules()
               if isinstance(m, nn.GroupNorm))
    with pytest.raises(ValueError, match='expand_ratio=0.1 leaves no'):
        build('OSAFPN', out_channels=out, num_outs=4, norm_cfg=gn,
              expand_ratio=0.1)


def expected_params(in_channels, out, mid, m, n, ese=False, pafpn=None,
                    extra_in=(), repvgg=False):
    """Conv weights + norm affine (+ eSE fc weight and bias), by hand."""
    e = 2 * mid

    def layer(c_in):
        total = 9 * c_in * m + 2 * m  # 3x3 + norm
        if repvgg:  # + 1x1 + norm, + identity norm when c_in == m
            total += c_in * m + 2 * m + (2 * m if c_in == m else 0)
        return total

    def module():
        total = layer(mid) + (n - 1) * layer(m)
        total += (e + n * m) * out + 2 * out  # 1x1 aggregation + norm
        if ese:
            total += out * out + out
        return total

    total = sum(c * e + 2 * e for c in in_channels)  # lateral 1x1s
    total += (len(in_channels) - 1) * (out * e + 2 * e)  # top-down 1x1s
    total += len(in_channels) * module()
    total += sum(9 * c * out + 2 * out for c in extra_in)
    levels = len(in_channels) - 1
    if pafpn == 'osa':
        # stride-2 3x3 and 1x1 parts of the fusion input, then a module
        total += levels * (9 * out * e + 2 * e + out * e + 2 * e + module())
    elif pafpn == 'pan':
        # PANet: stride-2 3x3 conv-norm, then a 3x3 conv-norm of the sum
        total += levels * 2 * (9 * out * out + 2 * out)
    return total


@pytest.mark.parametrize('neck_type,bottom_up', [('OSAFPN', None),
                                                 ('OSAPAFPN', 'osa'),
                                                 ('OSAPAFPN', 'pan')])
@pytest.mark.parametrize('ratio,m,n,ese,repvgg', [
    (0.5, 12, 1, False, False), (0.25, 8, 3, True, False),
    (0.5, 8, 2, False, True)])
def test_params_match_hand_count(neck_type, bottom_up, ratio, m, n, ese,
                                 repvgg):
    options = dict(bottom_up=bottom_up) if bottom_up else {}
    neck = build(neck_type, num_outs=6, add_extra_convs='on_input',
                 expand_ratio=ratio, module_channels=m, layers_per_module=n,
                 use_ese=ese, repvgg=repvgg, **options)
    expected = expected_params(IN_CHANNELS, OUT, int(OUT * ratio), m, n,
                               ese, pafpn=bottom_up,
                               extra_in=(IN_CHANNELS[-1], OUT),
                               repvgg=repvgg)
    assert num_params(neck) == expected
    n_ese = sum(isinstance(x, ChannelAttention) for x in neck.modules())
    num_modules = 4 + 3 * (bottom_up == 'osa')
    assert n_ese == (num_modules if ese else 0)


def zero_aggregations(neck):
    for module in neck.modules():
        if isinstance(module, OSAModule):
            nn.init.zeros_(module.aggregation.conv.weight)


def test_identity_shortcut_carries_the_top_down_map():
    # With every aggregation zeroed, a module outputs ReLU(BN(0)) = 0, so a
    # fused level is exactly its shortcut: the upsampled coarser level.
    inputs = feats()
    for identity in (False, True):
        neck = build('OSAFPN', num_outs=4, identity=identity).eval()
        zero_aggregations(neck)
        with torch.no_grad():
            outs = neck(inputs)
        assert torch.count_nonzero(outs[-1]) == 0
        for i in range(3):
            expected = torch.nn.functional.interpolate(outs[i + 1],
                                                       size=SIZES[i])
            assert torch.equal(outs[i], expected)
    with torch.no_grad():
        last = build('OSAFPN', num_outs=4, identity=True).eval()(inputs)[-1]
    assert torch.count_nonzero(last) > 0  # (the zeroing is what made 0)


def test_pafpn_identity_carries_the_top_down_output_of_the_level():
    # zeroed bottom-up aggregations: N_i = ReLU(BN(0)) [+ P_i] = [P_i]
    inputs = feats()
    for identity in (False, True):
        neck = build('OSAPAFPN', num_outs=4, identity=identity,
                     bottom_up='osa').eval()
        for module in neck.bottom_up_modules:
            nn.init.zeros_(module.aggregation.conv.weight)
        with torch.no_grad():
            top_down = OSAFPN._fuse(neck, inputs)
            outs = neck(inputs)
        assert torch.equal(outs[0], top_down[0])
        for i in range(1, 4):
            assert torch.count_nonzero(top_down[i]) > 0
            expected = top_down[i] if identity else torch.zeros_like(
                top_down[i])
            assert torch.equal(outs[i], expected)


def test_pan_bottom_up_is_panets_sum_then_3x3():
    # bottom_up='pan': N_0 = P_0, N_i = conv_i(P_i + down_i(N_{i-1})), the
    # convs 3x3 conv-norms without activation (mmdet's PAFPN)
    torch.manual_seed(0)
    neck = build('OSAPAFPN', num_outs=4).eval()
    randomize_norms(neck)
    assert not hasattr(neck, 'bottom_up_lateral_convs')
    for conv in list(neck.downsample_convs) + list(neck.bottom_up_modules):
        assert conv.conv.kernel_size == (3, 3) and not conv.with_activation
        assert conv.conv.in_channels == conv.conv.out_channels == OUT
    assert [c.conv.stride for c in neck.downsample_convs] == [(2, 2)] * 3
    inputs = feats()
    with torch.no_grad():
        top_down = OSAFPN._fuse(neck, inputs)
        outs = neck(inputs)
        assert torch.equal(outs[0], top_down[0])
        for i in range(1, 4):
            down = neck.downsample_convs[i - 1](outs[i - 1])
            expected = neck.bottom_up_modules[i - 1](top_down[i] + down)
            assert torch.allclose(outs[i], expected, atol=1e-6)
            assert not torch.allclose(outs[i], top_down[i])
    with pytest.raises(ValueError, match="bottom_up='fpn' is not"):
        build('OSAPAFPN', num_outs=4, bottom_up='fpn')


def test_eSE_and_identity_change_the_output():
    inputs = feats()
    torch.manual_seed(0)
    plain = build('OSAFPN', num_outs=4).eval()
    for options in (dict(use_ese=True), dict(identity=True)):
        torch.manual_seed(0)
        other = build('OSAFPN', num_outs=4, **options).eval()
        other.load_state_dict(plain.state_dict(), strict=False)
        with torch.no_grad():
            a, b = plain(inputs)[0], other(inputs)[0]
        assert not torch.allclose(a, b), options


@pytest.mark.parametrize('neck_type', OSA_TYPES)
def test_gn_variant_trains_and_has_only_group_norms(neck_type):
    gn = dict(type='GN', num_groups=4, requires_grad=True)
    neck = build(neck_type, num_outs=5, add_extra_convs='on_output',
                 norm_cfg=gn).train()
    norms = [m for m in neck.modules()
             if isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    assert all(m.num_groups == 4 for m in norms)
    outs = neck(feats())
    loss = sum(o.mean() for o in outs)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize('neck_type', OSA_TYPES)
def test_depthwise_variant_has_only_depthwise_3x3_and_no_bottleneck(
        neck_type):
    neck = build(neck_type, num_outs=6, add_extra_convs='on_input',
                 depthwise=True, use_ese=True, identity=True)
    convs = [m for m in neck.modules() if isinstance(m, nn.Conv2d)]
    three = [c for c in convs if c.kernel_size == (3, 3)]
    assert three and all(c.groups == c.in_channels == c.out_channels
                         for c in three)
    for module in neck.modules():
        if isinstance(module, OSAModule):
            assert module.reduction is None
            # the first depthwise conv runs on the non-bypassed half
            assert module.layers[0].depthwise_conv.conv.in_channels == \
                neck.mid_channels
    dense = build(neck_type, num_outs=6, add_extra_convs='on_input')
    assert num_params(neck) < num_params(dense)
    outs = neck.train()(feats())
    sum(o.mean() for o in outs).backward()
    assert [o.shape[1] for o in outs] == [OUT] * 6


def test_osa_module_bypass_channels_reach_only_the_aggregation():
    torch.manual_seed(0)
    module = OSAModule(8, 6, 10, 2, bypass_channels=3).eval()
    assert module.layers[0].conv.in_channels == 5
    assert module.aggregation.conv.in_channels == 8 + 2 * 6
    with torch.no_grad():
        # cut the bypass channels out of the aggregation: they must then
        # have no effect at all
        module.aggregation.conv.weight[:, :3] = 0
        x = torch.rand(1, 8, 6, 6)
        y = x.clone()
        y[:, :3] = torch.rand(1, 3, 6, 6)
        assert torch.equal(module(x), module(y))
        z = x.clone()
        z[:, 3:] += 1
        assert not torch.equal(module(x), module(z))
    with pytest.raises(ValueError, match='bypass_channels must be in'):
        OSAModule(8, 6, 10, 2, bypass_channels=8)


@pytest.mark.parametrize('neck_type,options', [
    ('OSAFPN', {}), ('OSAPAFPN', dict(bottom_up='osa')), ('OSAPAFPN', {})])
def test_repvgg_layers_fold_exactly(neck_type, options):
    torch.manual_seed(0)
    neck = build(neck_type, num_outs=5, repvgg=True, identity=True,
                 **options)
    # trains (in-place sums on BN outputs keep autograd intact)
    sum(o.mean() for o in neck.train()(feats())).backward()
    randomize_norms(neck)
    neck.eval()
    blocks = [m for m in neck.modules() if isinstance(m, RepVGGBlock)]
    # two layers per OSA module: 4 top-down, 3 bottom-up with 'osa'
    assert len(blocks) == 2 * (4 + 3 * (options.get('bottom_up') == 'osa'))
    # c_in = c_out = mid: every layer has its identity branch
    assert all(b.branch_identity is not None for b in blocks)
    inputs = feats()
    with torch.no_grad():
        before = neck(inputs)
    neck.switch_to_deploy()
    assert neck.deploy and all(b.deploy for b in blocks)
    assert not any(isinstance(m, _BatchNorm) for b in blocks
                   for m in b.modules())
    with torch.no_grad():
        after = neck(inputs)
    # max |a - b| / max |a| per level (fp32 rounding of the fold)
    assert max_relative_difference(before, after) < 1e-5
    state = {k: v.clone() for k, v in neck.state_dict().items()}
    neck.switch_to_deploy()  # idempotent
    assert all(torch.equal(v, neck.state_dict()[k]) for k, v in state.items())
    # a neck built with deploy=True loads the folded weights (the
    # re-parameterised checkpoint) and computes the same
    deployed = build(neck_type, num_outs=5, repvgg=True, identity=True,
                     deploy=True, **options).eval()
    deployed.load_state_dict(state)
    with torch.no_grad():
        assert max_relative_difference(before, deployed(inputs)) < 1e-5


def test_inference_tools_find_the_repvgg_neck_only():
    detector = nn.Module()
    detector.neck = build('OSAFPN', num_outs=4)
    assert deployable_modules(detector) == []
    detector.neck = build('OSAPAFPN', num_outs=4, repvgg=True)
    assert [name for name, _ in deployable_modules(detector)] == ['neck']
    randomize_norms(detector)
    inputs = feats()
    form = to_inference_form(detector.neck, check=lambda m: m(inputs))
    assert form.reparameterized == [''] and form.folded_bn > 0
    assert form.max_rel_diff < 1e-5
    assert not any(isinstance(m, _BatchNorm) for m in detector.modules())


def test_repvgg_neck_checkpoint_converts_to_a_deploy_config():
    # tools/reparameterize.py's path: fold the trained state dict, mark the
    # neck deploy=True in the config, and the deploy model loads it strictly
    register_all_modules()
    cfg = load('vovnet19slim_osafpnrep_maskrcnn_shapes_ablation.py')
    model = MODELS.build(cfg.model)
    randomize_norms(model.neck)
    state = model.state_dict()
    deploy_state, names = reparameterize_state_dict(model, state)
    assert names == ['neck']
    mark_deploy(cfg, names)
    assert cfg.model.neck.deploy is True
    deployed = MODELS.build(cfg.model)
    deployed.load_state_dict(deploy_state)  # strict
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval().extract_feat(image)
        assert max_relative_difference(
            expected, deployed.eval().extract_feat(image)) < 1e-5


def test_groupnorm_repvgg_neck_is_refused_naming_the_layer():
    detector = nn.Module()
    detector.neck = build('OSAFPN', num_outs=4, repvgg=True,
                          norm_cfg=dict(type='GN', num_groups=4))
    with pytest.raises(ReparameterizationError) as err:
        reparameterize_model(detector)
    message = str(err.value)
    assert 'model.neck (OSAFPN)' in message and '(GroupNorm)' in message
    assert "model.neck.norm_cfg=dict(type='SyncBN')" in message
    assert not any(m.deploy for m in detector.modules()
                   if isinstance(m, RepVGGBlock))


def test_depthwise_reduction_default_keeps_the_backbone_module():
    # the backbone's VoVNetV2-DW modules keep their 1x1 reduction
    module = OSAModule(16, 8, 32, 3, depthwise=True)
    assert module.reduction is not None
    lite = OSAModule(16, 8, 32, 3, depthwise=True, depthwise_reduction=False)
    assert lite.reduction is None
    assert lite.layers[0].depthwise_conv.conv.in_channels == 16
    x = torch.rand(1, 16, 8, 8)
    assert lite(x).shape == module(x).shape == (1, 32, 8, 8)


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_outs=5, norm_cfg=None), 'needs a norm_cfg'),
    (dict(num_outs=5, add_extra_convs='on_top'), 'on_input, on_lateral'),
    (dict(num_outs=3), 'num_outs=3 is smaller'),
    (dict(num_outs=4, end_level=2), 'num_outs must be 3'),
    (dict(num_outs=4, layers_per_module=0), 'layers_per_module'),
    (dict(num_outs=4, expand_ratio=0.01), 'expand_ratio=0.01 leaves no'),
    (dict(num_outs=4, repvgg=True, depthwise=True), 'exclude each other'),
    (dict(num_outs=4, deploy=True), 'needs repvgg=True'),
])
def test_bad_arguments_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build('OSAFPN', **kwargs)


def test_wrong_number_of_inputs_is_reported():
    neck = build('OSAFPN', num_outs=4)
    with pytest.raises(ValueError, match='4 input levels, got 3'):
        neck(feats()[:3])


# ---- configs ---------------------------------------------------------------

NEW_CONFIGS = [
    'vovnet39_osafpn_maskrcnn_coco.py',
    'vovnet2_19slimdw_osafpnlite_maskrcnn_coco.py',
    'vovnet19slim_fpn_maskrcnn_shapes_ablation.py',
    'vovnet19slim_osafpn_maskrcnn_shapes_ablation.py',
    'vovnet19slim_pafpn_maskrcnn_shapes_ablation.py',
    'vovnet19slim_osapafpn_maskrcnn_shapes_ablation.py',
    'vovnet19slim_osafpnrep_maskrcnn_shapes_ablation.py',
    'vovnet19slim_osafpnlite_maskrcnn_shapes_ablation.py',
]
# what each shapes ablation config changes in the FPN side's neck
ABLATION_NECKS = {
    'osafpn': dict(type='OSAFPN'),
    'pafpn': dict(type='PAFPN'),
    'osapafpn': dict(type='OSAPAFPN'),
    'osafpnrep': dict(type='OSAFPN', repvgg=True,
                      norm_cfg=dict(type='BN', requires_grad=True)),
    'osafpnlite': dict(type='OSAFPN', depthwise=True),
}


def load(name):
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def fake_batch(model, num_classes, size=64):
    sample = DetDataSample()
    sample.set_metainfo(
        dict(img_shape=(size, size), ori_shape=(size, size),
             pad_shape=(size, size), scale_factor=(1.0, 1.0),
             batch_input_shape=(size, size)))
    gt = InstanceData()
    gt.bboxes = torch.tensor([[4., 6., 40., 44.], [20., 10., 60., 30.]])
    gt.labels = torch.tensor([0, num_classes - 1])
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 6:44, 4:40] = 1
    masks[1, 10:30, 20:60] = 1
    gt.masks = BitmapMasks(masks.numpy(), size, size)
    sample.gt_instances = gt
    img = torch.randint(0, 255, (3, size, size), dtype=torch.uint8)
    return model.data_preprocessor(
        dict(inputs=[img], data_samples=[sample]), training=True)


# (the other new configs build and run in tests/test_configs)
@pytest.mark.parametrize('name', NEW_CONFIGS[:4])
def test_config_builds_and_runs_loss(name):
    register_all_modules()
    cfg = load(name)
    model = MODELS.build(cfg.model).train()
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    losses = model(**fake_batch(model, num_classes), mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_mask'):
        assert key in losses
    total.backward()
    neck_grads = [p.grad for p in model.neck.parameters()]
    assert all(g is not None for g in neck_grads)


def test_vovnet39_osafpn_config_overrides_only_the_neck_type():
    fpn, osa = load('vovnet39_maskrcnn_coco.py'), load(NEW_CONFIGS[0])
    assert osa.model.neck.type == 'OSAFPN'
    assert osa.model.neck.norm_cfg == dict(type='GN', num_groups=32,
                                           requires_grad=True)
    fpn_neck = dict(fpn.model.neck, type='OSAFPN')
    assert osa.model.neck == fpn_neck
    assert {k: v for k, v in osa.model.items() if k != 'neck'} == \
        {k: v for k, v in fpn.model.items() if k != 'neck'}
    assert osa.train_cfg == fpn.train_cfg and osa.optim_wrapper == \
        fpn.optim_wrapper


def test_lite_config_is_depthwise_128_channels_with_ese():
    cfg = load(NEW_CONFIGS[1])
    assert cfg.model.backbone.arch == 'V2-19-slim-dw'
    neck = cfg.model.neck
    assert (neck.type, neck.out_channels, neck.depthwise, neck.use_ese,
            neck.identity) == ('OSAFPN', 128, True, True, True)
    assert neck.in_channels == [112, 256, 384, 512]
    assert cfg.model.rpn_head.in_channels == 128
    assert cfg.model.roi_head.bbox_head.in_channels == 128
    assert cfg.model.roi_head.mask_head.in_channels == 128


@pytest.mark.parametrize('neck', ABLATION_NECKS)
def test_ablation_configs_differ_only_in_the_neck(neck):
    fpn = load('vovnet19slim_fpn_maskrcnn_shapes_ablation.py')
    other = load(f'vovnet19slim_{neck}_maskrcnn_shapes_ablation.py')
    demo = load('vovnet19slim_maskrcnn_shapes.py')
    assert fpn.model == demo.model  # the FPN side is the demo itself
    fpn_dict, other_dict = fpn.to_dict(), other.to_dict()
    fpn_dict['model']['neck'].update(ABLATION_NECKS[neck])
    assert other_dict == fpn_dict
    assert other.randomness.seed == fpn.randomness.seed == 0
