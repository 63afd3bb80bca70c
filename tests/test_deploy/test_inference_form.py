"""The inference form: conv-BN folding, branch fusion and channels-last in
one call, checked against the training form."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401  (registers the backbones)
from vovdet.deploy import (ReparameterizationError, feature_check,
                           fold_conv_bn, to_inference_form)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
register_all_modules()


def randomise_bn(model, seed=0):
    """Non-trivial BN statistics, so that folding has something to fold."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize('spec, num_bn, num_left', [
    # stem 3 + 4 stages x (5 layers + aggregation), all conv -> BN
    (dict(type='VoVNet', arch='V-27-slim'), 27, 0),
    # stem + every dense layer's conv1 -> norm2; the pre-activation norms
    # (norm1, transitions, final norm) precede their convs and stay
    (dict(type='DenseNet', arch='121'), 1 + 6 + 12 + 24 + 16, 58 + 3 + 1),
    # DSOD's norm-act-conv ConvModules register the conv first; their norms
    # stay (folding one into a 256->256 1x1 conv changes the output)
    (dict(type='DSODDenseNet', arch='DSOD300', out_indices=(1, 3)), 33, 34),
])
def test_fold_conv_bn_equals_unfused(spec, num_bn, num_left):
    model = randomise_bn(MODELS.build(spec)).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(image)
        folded = fold_conv_bn(model)
        outputs = model(image)
    assert folded == num_bn
    assert sum(isinstance(m, _BatchNorm) for m in model.modules()) == \
        num_left
    for ref, out in zip(reference, outputs):
        # fp32 rounding, relative to the map's largest value
        torch.testing.assert_close(
            out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_repvgg_inference_form_fuses_folds_and_goes_channels_last():
    model = randomise_bn(MODELS.build(dict(type='RepVGG', arch='A0')))
    form = to_inference_form(model, channels_last=True,
                             check=feature_check(model, (64, 64)))
    assert form.reparameterized == ['']
    assert form.folded_bn == 0  # the fusion already removed every BN
    assert form.channels_last
    assert 0 <= form.max_rel_diff < 1e-4
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert str(form).startswith('inference form: re-parameterised , 0 '
                                'BatchNorm folded into convs, channels-last')


def test_model_without_branches_is_folded_only_unless_fusion_required():
    model = randomise_bn(MODELS.build(dict(type='VoVNet', arch='V-27-slim')))
    form = to_inference_form(model, check=feature_check(model, (64, 64)))
    assert form.reparameterized == [] and form.folded_bn == 27
    assert form.max_rel_diff < 1e-4
    assert str(form).startswith('inference form: no branches to fuse, 27 '
                                'BatchNorm folded')
    with pytest.raises(ReparameterizationError, match='VoVNet has no module'):
        to_inference_form(model, fuse_branches=True)


def test_dsod_detector_inference_form_keeps_its_predictions():
    from vovdet.deploy import build_detector
    model, _ = build_detector(
        osp.join(ROOT, 'configs', 'vovnet27slim_dsod160_shapes.py'))
    randomise_bn(model)
    form = to_inference_form(model, check=feature_check(model, (160, 160)))
    assert form.folded_bn > 0 and form.max_rel_diff < 1e-4


class PreActivation(nn.Module):
    """BN registered after the conv but applied before it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.conv(self.bn(x))


def test_folding_that_changes_the_output_is_refused():
    model = PreActivation()
    with torch.no_grad():
        model.bn.running_mean.fill_(2.0)
        model.bn.running_var.fill_(4.0)
    with pytest.raises(ReparameterizationError,
                       match='PreActivation: the inference transforms '
                       'changed the output'):
        to_inference_form(model, check=feature_check(model, (8, 8)))
