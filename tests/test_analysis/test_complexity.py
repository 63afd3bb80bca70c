"""Tests for vovdet.analysis.complexity (params, multiply-adds, MAC)."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import Scale
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import vovdet  # noqa: F401  (registers VoVNet)
from vovdet.analysis import (conv_mac, format_layer_table, format_summary,
                             get_complexity, get_config_complexity,
                             mac_lower_bound, mac_table)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MASK_RCNN_CONFIG = osp.join(REPO, 'configs', 'vovnet39_maskrcnn_coco.py')

register_all_modules()


def single_layer(module, inputs):
    result = get_complexity(module, inputs)
    assert len(result.layers) == 1
    return result


def test_conv_params_flops_mac_match_hand_count():
    # 3x3, 16 -> 32 on 8x8: FLOPs 9*16*32*64, MAC 64*16 + 64*32 + 9*16*32.
    res = single_layer(nn.Conv2d(16, 32, 3, padding=1, bias=False),
                       (16, 8, 8))
    assert res.params == 4608
    assert res.flops == 294912
    assert res.mac == 7680
    assert res.mac == conv_mac(8, 8, 16, 32, 3)
    assert res.layers[0].in_shapes == [(1, 16, 8, 8)]
    assert res.layers[0].out_shapes == [(1, 32, 8, 8)]


def test_conv_bias_counts_as_params_not_flops():
    res = single_layer(nn.Conv2d(16, 32, 3, padding=1, bias=True),
                       (16, 8, 8))
    assert res.params == 4608 + 32
    assert res.flops == 294912
    assert res.mac == 7680


def test_grouped_conv_divides_by_groups():
    # weight 32 * (16/4) * 9 = 1152.
    res = single_layer(
        nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False), (16, 8, 8))
    assert res.params == 1152
    assert res.flops == 1152 * 64
    assert res.mac == 64 * 16 + 64 * 32 + 1152


def test_depthwise_conv():
    res = single_layer(
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), (16, 8, 8))
    assert res.params == 144
    assert res.flops == 144 * 64
    assert res.mac == 64 * 16 + 64 * 16 + 144


def test_strided_conv_mac_uses_input_and_output_sizes():
    # 8x8 -> 4x4: FLOPs 9*16*32*16; MAC 8*8*16 + 4*4*32 + 9*16*32.
    res = single_layer(
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), (16, 8, 8))
    assert res.layers[0].out_shapes == [(1, 32, 4, 4)]
    assert res.flops == 73728
    assert res.mac == 1024 + 512 + 4608


def test_transposed_conv():
    # 2x2/2 deconv 8 -> 4 on 4x4: each output pixel sums 8 products.
    res = single_layer(
        nn.ConvTranspose2d(8, 4, 2, stride=2, bias=False), (8, 4, 4))
    assert res.layers[0].out_shapes == [(1, 4, 8, 8)]
    assert res.params == 128
    assert res.flops == 4 * 8 * 8 * 8
    assert res.mac == 8 * 4 * 4 + 4 * 8 * 8 + 128


def test_linear_counts_every_row():
    res = single_layer(nn.Linear(128, 10), torch.rand(2, 128))
    assert res.params == 128 * 10 + 10
    assert res.flops == 2 * 128 * 10
    assert res.mac == 2 * 128 + 2 * 10 + 1280
    assert res.input_shapes == [(2, 128)]


def test_conv_and_linear_flops_agree_with_mmengine():
    from mmengine.analysis import FlopAnalyzer
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.Conv2d(16, 32, 3, padding=1, groups=4),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.ConvTranspose2d(32, 8, 2, stride=2), nn.Flatten(),
        nn.Linear(8 * 16 * 16, 10))
    image = torch.rand(1, 3, 16, 16)
    analyzer = FlopAnalyzer(model, image)
    analyzer.unsupported_ops_warnings(False)
    expected = analyzer.total()
    assert expected > 0
    assert get_complexity(model, image).flops == expected


def test_norm_activation_pool_are_not_flops():
    model = nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
        nn.ReLU(inplace=True), nn.MaxPool2d(2))
    res = get_complexity(model, (16, 8, 8))
    assert [row.type for row in res.layers] == [
        'Conv2d', 'BatchNorm2d', 'ReLU', 'MaxPool2d'
    ]
    assert [row.flops for row in res.layers] == [294912, 0, 0, 0]
    assert res.flops == 294912
    assert res.mac == 7680
    assert res.params == 4608 + 64
    assert res.uncounted == []
    # conv 2048 + BN 2048 + in-place ReLU nothing new + pool 512 elements.
    assert [row.activations for row in res.layers] == [2048, 2048, 0, 512]
    assert res.activations == 4608
    assert res.activation_bytes == 4608 * 4


def test_shared_module_is_counted_at_every_call():

    class Twice(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    res = get_complexity(Twice(), (16, 8, 8))
    assert [row.name for row in res.layers] == ['conv', 'conv#2']
    assert res.params == 16 * 16 * 9
    assert res.flops == 2 * 16 * 16 * 9 * 64


def test_parametrised_module_without_rule_is_reported():
    model = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), Scale(2.0))
    res = get_complexity(model, (4, 2, 2))
    assert res.uncounted == ['1 (Scale)']
    assert res.flops == 4 * 4 * 4
    assert res.params == 16 + 1


def test_model_mode_and_bn_statistics_restored():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).train()
    before = model[1].running_mean.clone()
    get_complexity(model, (3, 16, 16))
    assert model.training
    assert torch.equal(model[1].running_mean, before)


def test_invalid_inputs_raise():
    with pytest.raises(TypeError, match='inputs must be a shape'):
        get_complexity(nn.Conv2d(3, 3, 1), 'image')


def test_mac_lower_bound_reached_only_at_equal_channels():
    h = w = 56
    k = 3
    product = 128 * 128
    balanced = conv_mac(h, w, 128, 128, k)
    assert balanced == 56 * 56 * 256 + 9 * 128 * 128
    assert balanced == pytest.approx(mac_lower_bound(h, w, 128, 128, k))
    for c_in in (16, 32, 64, 256, 512, 1024):
        c_out = product // c_in
        bound = mac_lower_bound(h, w, c_in, c_out, k)
        # Same FLOPs, hence the same bound for every split.
        assert bound == pytest.approx(balanced)
        assert conv_mac(h, w, c_in, c_out, k) > bound * 1.05


def test_mac_table_minimum_at_equal_channels():
    rows = mac_table(56, 56, 3, 128 * 128, (32, 64, 128, 256, 512))
    assert [(r['c_in'], r['c_out']) for r in rows] == [(32, 512), (64, 256),
                                                        (128, 128), (256, 64),
                                                        (512, 32)]
    assert len({r['flops'] for r in rows}) == 1
    best = min(rows, key=lambda r: r['mac'])
    assert (best['c_in'], best['c_out']) == (128, 128)
    assert best['ratio'] == pytest.approx(1.0)
    assert rows[0]['mac'] == 56 * 56 * 544 + 9 * 128 * 128
    assert rows[0]['mac'] == rows[4]['mac']
    with pytest.raises(ValueError, match='does not divide'):
        mac_table(56, 56, 3, 128 * 128, (96, ))


@pytest.mark.parametrize('arch, mode, params, gmacs', [
    ('V-39', 'pytorch', 21575296, 7.07),
    ('V-39', 'paper', 21575296, 7.77),
    ('V-57', 'pytorch', 35615296, 8.93),
])
def test_vovnet_params_and_gmacs_match_paper_specs(arch, mode, params,
                                                    gmacs):
    # paper_specs §1.4: counts at 224x224 without the classifier.
    model = MODELS.build(dict(type='VoVNet', arch=arch,
                              stem_stride_mode=mode))
    res = get_complexity(model, (3, 224, 224))
    assert res.params == params
    assert res.flops / 1e9 == pytest.approx(gmacs, rel=0.01)
    assert res.not_run == []
    assert res.uncounted == []
    assert res.mac > 0 and res.activation_bytes == 4 * res.activations


def test_fpn_neck_on_feature_tuple():
    neck = MODELS.build(
        dict(type='FPN', in_channels=[8, 16], out_channels=8, num_outs=2))
    feats = (torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8))
    res = get_complexity(neck, feats)
    laterals = 8 * 8 * 16 * 16 + 16 * 8 * 8 * 8
    outputs = 9 * 8 * 8 * 16 * 16 + 9 * 8 * 8 * 8 * 8
    assert res.flops == laterals + outputs
    assert res.input_shapes == [(1, 8, 16, 16), (1, 16, 8, 8)]
    assert res.params == sum(p.numel() for p in neck.parameters())


def test_two_stage_detector_counts_features_and_rpn_only():
    res = get_config_complexity(MASK_RCNN_CONFIG, (64, 64), 'detector')
    backbone = get_config_complexity(MASK_RCNN_CONFIG, (64, 64), 'backbone')
    neck = get_config_complexity(MASK_RCNN_CONFIG, (64, 64), 'neck')
    rpn_flops = sum(row.flops for row in res.layers
                    if row.name.startswith('rpn_head.'))
    assert rpn_flops > 0
    assert res.flops == backbone.flops + neck.flops + rpn_flops
    assert res.not_run == ['roi_head']
    # The RPN convs are shared by the five pyramid levels.
    assert 'rpn_head.rpn_conv#5' in [row.name for row in res.layers]
    assert res.params > backbone.params + neck.params


def test_single_stage_detector_and_custom_forward_fn():
    model = MODELS.build(
        dict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor'),
            backbone=dict(
                type='VoVNet', arch='V-27-slim', out_indices=(1, 2, 3)),
            neck=dict(
                type='FPN',
                in_channels=[256, 384, 512],
                out_channels=16,
                add_extra_convs='on_input',
                num_outs=5),
            bbox_head=dict(
                type='RetinaHead',
                num_classes=3,
                in_channels=16,
                stacked_convs=1,
                feat_channels=16,
                anchor_generator=dict(
                    type='AnchorGenerator',
                    octave_base_scale=4,
                    scales_per_octave=3,
                    ratios=[0.5, 1.0, 2.0],
                    strides=[8, 16, 32, 64, 128]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                loss_cls=dict(type='FocalLoss', use_sigmoid=True),
                loss_bbox=dict(type='L1Loss'))))
    image = torch.rand(1, 3, 64, 64)
    res = get_complexity(model, image)
    feats_only = get_complexity(model, image,
                                lambda m, x: m.extract_feat(x))
    with torch.no_grad():
        feats = model.extract_feat(image)
    head = get_complexity(model.bbox_head, feats)
    assert head.flops > 0
    assert res.flops == feats_only.flops + head.flops
    assert res.mac == feats_only.mac + head.mac
    assert res.not_run == []
    assert feats_only.not_run == ['bbox_head']


def test_config_part_must_be_known():
    with pytest.raises(ValueError, match="unknown part 'head'"):
        get_config_complexity(MASK_RCNN_CONFIG, (64, 64), 'head')


def test_report_formatting():
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False))
    res = get_complexity(model, (16, 8, 8))
    table = format_layer_table(res).splitlines()
    assert table[0].split() == [
        'name', 'type', 'in', 'shape', 'out', 'shape', 'params', 'FLOPs',
        'MAC'
    ]
    assert table[2].split() == [
        '0', 'Conv2d', '1x16x8x8', '1x32x8x8', '4,608', '294,912', '7,680'
    ]
    summary = format_summary(res)
    assert 'params:               0.005 M (4,608)' in summary
    assert 'FLOPs (multiply-add): 0.000 GMACs (294,912)' in summary


def test_cli_prints_paper_layout_backbone_counts():
    tool = osp.join(REPO, 'tools', 'analysis', 'complexity.py')
    proc = subprocess.run(
        [
            sys.executable, tool, MASK_RCNN_CONFIG, '--part', 'backbone',
            '--shape', '224', '224', '--per-layer', '--cfg-options',
            'model.backbone.stem_stride_mode=paper'
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'params:               21.575 M (21,575,296)' in out
    gmacs = float(re.search(r'FLOPs \(multiply-add\): ([\d.]+) GMACs',
                            out).group(1))
    assert gmacs == pytest.approx(7.77, rel=0.01)
    assert re.search(r'^stem\.0\.conv\s+Conv2d\s+1x3x224x224\s+1x64x112x112',
                     out, re.MULTILINE)
