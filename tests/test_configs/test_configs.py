"""Every config in configs/ builds through the registry and runs."""
import glob
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData
from mmdet.structures.mask import BitmapMasks

from vovdet.utils import check_neck_channels, check_num_classes

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '*.py')))


def build_detector(path):
    register_all_modules()
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['vovdet'] or 'vovdet' in \
        cfg.custom_imports['imports']
    import vovdet  # noqa: F401
    return cfg, MODELS.build(cfg.model)


def fake_batch(model, size=64, num_classes=2, with_mask=True):
    """One image with two boxes (and masks), preprocessed like a loader's."""
    sample = DetDataSample()
    sample.set_metainfo(
        dict(img_shape=(size, size), ori_shape=(size, size),
             pad_shape=(size, size), scale_factor=(1.0, 1.0),
             batch_input_shape=(size, size)))
    gt = InstanceData()
    gt.bboxes = torch.tensor([[4., 6., 40., 44.], [20., 10., 60., 30.]])
    gt.labels = torch.tensor([0, num_classes - 1])
    if with_mask:
        masks = torch.zeros(2, size, size, dtype=torch.uint8)
        masks[0, 6:44, 4:40] = 1
        masks[1, 10:30, 20:60] = 1
        gt.masks = BitmapMasks(masks.numpy(), size, size)
    sample.gt_instances = gt
    img = torch.randint(0, 255, (3, size, size), dtype=torch.uint8)
    return model.data_preprocessor(
        dict(inputs=[img], data_samples=[sample]), training=True)


def test_all_configs_found():
    names = {osp.basename(p) for p in CONFIGS}
    assert {'vovnet39_maskrcnn_coco.py', 'vovnet57_maskrcnn_coco.py',
            'resnet50_maskrcnn_coco.py',
            'vovnet19slim_maskrcnn_shapes.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_and_runs_forward(path):
    from vovdet.utils.model_index import find_model
    cfg, model = build_detector(path)
    # the figure of the model index (configs/<family>/metafile.yml)
    meta = find_model(osp.basename(path)[:-3])['Metadata']
    assert sum(p.numel() for p in model.parameters()) == meta['Parameters']
    # the checks tools/train.py and tools/test.py run pass on every config
    check_num_classes(cfg)
    check_neck_channels(model, cfg.model)
    model.eval()
    data = fake_batch(model)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
    assert len(feats) >= 1 and all(torch.isfinite(f).all() for f in feats)


def test_vovnet39_maskrcnn_matches_paper_recipe():
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'vovnet39_maskrcnn_coco.py'))
    gn = dict(type='GN', num_groups=32, requires_grad=True)
    assert cfg.model.backbone.type == 'VoVNet'
    assert cfg.model.backbone.arch == 'V-39'
    assert cfg.model.backbone.frozen_stages == -1
    # VoVNet-Detectron vovnet.py, `_OSA_stage`: identity=True on modules 2..n
    assert cfg.model.backbone.residual is True
    assert cfg.model.backbone.norm_cfg == gn
    assert cfg.model.neck.norm_cfg == gn
    assert cfg.model.roi_head.bbox_head.type == 'Shared4Conv1FCBBoxHead'
    assert cfg.model.roi_head.bbox_head.norm_cfg == gn
    assert cfg.model.roi_head.mask_head.norm_cfg == gn
    assert cfg.load_from is None and 'pretrained' not in cfg.model.backbone
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.train_dataloader.dataset.pipeline[2]['scale'] == (1333, 800)
    assert cfg.val_evaluator.metric == ['bbox', 'segm']


@pytest.mark.parametrize('name', ['vovnet39_maskrcnn_coco.py',
                                  'vovnet57_maskrcnn_coco.py'])
def test_table5_vovnet_has_identity_shortcuts(name):
    from vovdet.models.layers import OSAModule
    _, model = build_detector(osp.join(ROOT, 'configs', name))
    shortcuts = [m.identity for m in model.backbone.modules()
                 if isinstance(m, OSAModule)]
    # V-39: stages of 1/1/2/2 modules -> 2 shortcuts; V-57: 1/1/4/3 -> 5
    assert sum(shortcuts) == {'vovnet39_maskrcnn_coco.py': 2,
                              'vovnet57_maskrcnn_coco.py': 5}[name]


def test_resnet50_baseline_swaps_backbone_only():
    base = Config.fromfile(osp.join(ROOT, 'configs',
                                    'vovnet39_maskrcnn_coco.py'))
    r50 = Config.fromfile(osp.join(ROOT, 'configs',
                                   'resnet50_maskrcnn_coco.py'))
    assert r50.model.backbone.type == 'ResNet'
    assert r50.model.backbone.norm_cfg.type == 'GN'
    assert 'arch' not in r50.model.backbone
    assert r50.model.roi_head == base.model.roi_head


def test_demo_maskrcnn_loss_and_predict():
    _, model = build_detector(
        osp.join(ROOT, 'configs', 'vovnet19slim_maskrcnn_shapes.py'))
    model.train()
    data = fake_batch(model, size=96, num_classes=4)
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    data = fake_batch(model, size=96, num_classes=4)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 1
    pred = results[0].pred_instances
    assert pred.bboxes.shape[-1] == 4
    assert len(pred.masks) == len(pred.bboxes)


def test_vovnet39_maskrcnn_loss_on_small_image():
    _, model = build_detector(
        osp.join(ROOT, 'configs', 'vovnet39_maskrcnn_coco.py'))
    model.train()
    losses = model(**fake_batch(model, size=64, num_classes=80), mode='loss')
    assert torch.isfinite(losses['loss_mask'])
