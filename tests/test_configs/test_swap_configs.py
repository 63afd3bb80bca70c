"""The backbone-swap configs change only the backbone (and the FPN input
widths) of the VoVNet-39 Mask R-CNN recipe, and the table of
docs/swap_backbone.md holds for their backbones."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from vovdet.analysis.complexity import get_complexity

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(ROOT, 'configs', 'vovnet39_maskrcnn_coco.py')

# config -> (backbone type, arch, neck in_channels, backbone norm, params,
# GMACs at 224x224 and at 800x1333), the rows of docs/swap_backbone.md.
SWAPS = {
    'repvgg_a0_maskrcnn_coco.py':
    ('RepVGG', 'A0', [48, 96, 192, 1280], 'SyncBN', 7_827_968, 1.511, 32.33),
    'repvgg_b1_maskrcnn_coco.py':
    ('RepVGG', 'B1', [128, 256, 512, 2048], 'SyncBN', 55_366_016, 13.126,
     280.68),
    'efficientnet_b0_maskrcnn_coco.py':
    ('VoVDetEfficientNet', 'b0', [24, 40, 112, 320], 'GN', 3_595_388, 0.364,
     7.78),
    'efficientnet_b3_maskrcnn_coco.py':
    ('VoVDetEfficientNet', 'b3', [32, 48, 136, 384], 'GN', 10_103_336, 0.932,
     19.90),
    'densenet201_maskrcnn_coco.py':
    ('DenseNet', '201', [256, 512, 1792, 1920], 'GN', 18_092_928, 4.289,
     91.00),
    'vovnet2_39_maskrcnn_coco.py':
    ('VoVNet', 'V2-39', [256, 512, 768, 1024], 'GN', 25_184_128, 7.075,
     150.22),
    'vovnet2_99_maskrcnn_coco.py':
    ('VoVNet', 'V2-99', [256, 512, 768, 1024], 'GN', 69_523_520, 16.495,
     349.94),
}


def load(name):
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def without_swap(cfg):
    """The config dict minus the keys a backbone swap may change."""
    data = copy.deepcopy(cfg.to_dict())
    data['model'].pop('backbone')
    data['model']['neck'].pop('in_channels')
    return data


@pytest.mark.parametrize('name', sorted(SWAPS))
def test_swap_changes_only_backbone_and_neck_in_channels(name):
    backbone_type, arch, in_channels, norm, *_ = SWAPS[name]
    cfg, base = load(name), Config.fromfile(BASE)
    assert without_swap(cfg) == without_swap(base)
    assert cfg.model.backbone.type == backbone_type
    assert cfg.model.backbone.arch == arch
    assert cfg.model.backbone.norm_cfg.type == norm
    assert cfg.model.neck.in_channels == in_channels
    if backbone_type != 'VoVNet':  # a new type drops every VoVNet key
        assert 'stem_stride_mode' not in cfg.model.backbone


@pytest.mark.parametrize('name', sorted(SWAPS))
def test_swap_backbone_fits_neck_and_matches_docs_table(name):
    *_, params, gmacs_224, gmacs_800 = SWAPS[name]
    cfg = load(name)
    with torch.device('meta'):
        backbone = MODELS.build(cfg.model.backbone)
    backbone.eval()
    assert list(backbone.out_channels) == cfg.model.neck.in_channels
    assert sum(p.numel() for p in backbone.parameters()) == params
    result = get_complexity(backbone, (3, 224, 224))
    assert round(result.flops / 1e9, 3) == gmacs_224
    result = get_complexity(backbone, (3, 800, 1333))
    assert round(result.flops / 1e9, 2) == gmacs_800


@pytest.mark.parametrize('name', ['efficientnet_b0_maskrcnn_coco.py',
                                  'efficientnet_b3_maskrcnn_coco.py'])
def test_efficientnet_gn_groups_divide_every_width(name):
    cfg = load(name)
    groups = cfg.model.backbone.norm_cfg.num_groups
    with torch.device('meta'):
        backbone = MODELS.build(cfg.model.backbone)
    norms = [m for m in backbone.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == groups for m in norms)
    widths = {m.num_channels for m in norms}
    assert all(w % groups == 0 for w in widths)
    # the base's 32 groups would not fit
    assert any(w % 32 for w in widths)


@pytest.mark.parametrize('name', ['repvgg_a0_maskrcnn_coco.py',
                                  'repvgg_b1_maskrcnn_coco.py'])
def test_repvgg_swaps_use_foldable_norms_and_gn_elsewhere(name):
    cfg = load(name)
    register_all_modules()
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert all(isinstance(m, _BatchNorm) for m in model.backbone.modules()
               if 'norm' in type(m).__name__.lower())
    assert any(isinstance(m, nn.SyncBatchNorm)
               for m in model.backbone.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.neck.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.roi_head.modules())
