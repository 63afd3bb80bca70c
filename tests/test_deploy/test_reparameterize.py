"""Whole-detector re-parameterisation: in memory, through the checkpoint
tool (tools/reparameterize.py) and on the fly as part of the inference form
(tools/test.py --deploy)."""
import os.path as osp
import pickle

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

import vovdet  # noqa: F401
from tests import helpers
from vovdet.apis.reparameterize import main as reparameterize_main
from vovdet.deploy import (ReparameterizationError, deployable_modules,
                           reparameterize_model)
from vovdet.models.backbones.repvgg import RepVGGBlock
from vovdet.utils import safe_load_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REPVGG_A0 = osp.join(ROOT, 'configs', 'repvgg_a0_maskrcnn_coco.py')
DEMO = osp.join(ROOT, 'configs', 'vovnet19slim_maskrcnn_shapes.py')
# Few proposals and detections keep the 4conv1fc box head and the 4-conv
# mask head of the COCO recipe cheap on a 64 px image.
SMALL_TEST_CFG = {
    'model.test_cfg.rpn.nms_pre': 200,
    'model.test_cfg.rpn.max_per_img': 50,
    'model.test_cfg.rcnn.score_thr': 0.0,
    'model.test_cfg.rcnn.max_per_img': 10,
}


def build(cfg):
    register_all_modules()
    model = MODELS.build(cfg.model)
    helpers.randomize_norms(model.backbone)
    return model.eval()


def predict(model, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                        generator=generator)
    sample = DetDataSample()
    sample.set_metainfo(
        dict(img_shape=(size, size), ori_shape=(size, size),
             scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        dict(inputs=[img], data_samples=[sample]), training=False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        results = model(**data, mode='predict')
    return feats, results[0].pred_instances


def assert_relative_close(actual, expected, rtol=1e-4):
    scale = expected.abs().max()
    assert scale > 0
    error = (actual - expected).abs().max() / scale
    assert error <= rtol, f'relative error {error:.2e} > {rtol:.0e}'


def assert_same_predictions(actual, expected):
    assert len(expected) > 0
    assert len(actual) == len(expected)
    assert torch.equal(actual.labels, expected.labels)
    assert_relative_close(actual.bboxes, expected.bboxes)
    assert_relative_close(actual.scores, expected.scores)
    if 'masks' in expected:
        assert torch.equal(actual.masks, expected.masks)


def test_repvgg_maskrcnn_predictions_equivalent_after_reparameterize():
    cfg = Config.fromfile(REPVGG_A0)
    cfg.merge_from_dict(SMALL_TEST_CFG)
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    model = build(cfg)
    feats, preds = predict(model)
    assert [name for name, _ in deployable_modules(model)] == ['backbone']

    assert reparameterize_model(model) == ['backbone']
    blocks = [m for m in model.modules() if isinstance(m, RepVGGBlock)]
    assert len(blocks) == 22 and all(b.deploy for b in blocks)
    assert not any(isinstance(m, _BatchNorm) for m in model.backbone.modules())
    feats_deploy, preds_deploy = predict(model)
    for a, b in zip(feats_deploy, feats, strict=True):
        assert_relative_close(a, b)
    assert_same_predictions(preds_deploy, preds)
    # idempotent: a second call changes nothing
    reparameterize_model(model)
    assert_same_predictions(predict(model)[1], preds)


def test_groupnorm_backbone_is_refused_naming_the_layer():
    cfg = Config.fromfile(REPVGG_A0)
    cfg.model.backbone.norm_cfg = dict(type='GN', num_groups=16)
    model = build(cfg)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ReparameterizationError) as err:
        reparameterize_model(model)
    message = str(err.value)
    assert 'model.backbone (RepVGG)' in message
    assert "'stem.branch_3x3.gn' (GroupNorm)" in message
    assert "norm_cfg=dict(type='SyncBN')" in message
    # nothing was converted
    assert not any(b.deploy for b in model.modules()
                   if isinstance(b, RepVGGBlock))
    assert model.state_dict().keys() == state.keys()


def test_model_without_deployable_module_is_refused():
    cfg = Config.fromfile(DEMO)
    model = build(cfg)
    with pytest.raises(ReparameterizationError, match='nothing to re-param'):
        reparameterize_model(model)


def shapes_repvgg_config(tmp_path, data_root, norm_cfg=None):
    """The shapes demo with the backbone of repvgg_a0_maskrcnn_coco.py."""
    cfg = Config.fromfile(DEMO)
    repvgg = Config.fromfile(REPVGG_A0)
    cfg.model.backbone = repvgg.model.backbone
    if norm_cfg is not None:
        cfg.model.backbone.norm_cfg = norm_cfg
    cfg.model.neck.in_channels = repvgg.model.neck.in_channels
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.model.test_cfg.rcnn.max_per_img = 20
    helpers.shrink_loaders(cfg, data_root, splits=('test', ))
    cfg.val_dataloader = cfg.test_dataloader
    ann = osp.join(data_root, 'annotations', 'instances_val.json')
    cfg.test_evaluator.ann_file = ann
    cfg.val_evaluator.ann_file = ann
    path = str(tmp_path / 'repvgg_a0_shapes.py')
    cfg.dump(path)
    return path


def save_trained_like_checkpoint(config, path):
    """A randomly initialised detector saved the way the runner saves one."""
    model = build(Config.fromfile(config))
    meta = dict(epoch=3, iter=12, seed=0, experiment_name='repvgg_tiny',
                dataset_meta=dict(classes=('rectangle', 'ellipse',
                                           'triangle', 'hexagon')))
    optimizer = dict(state={}, param_groups=[dict(lr=0.02, params=[0, 1])])
    save_checkpoint(
        dict(meta=meta, state_dict=model.state_dict(), optimizer=optimizer),
        path)
    return model, meta


def run_tool(args, check=True):
    """``tests.helpers.run_tool`` on one thread."""
    return helpers.run_tool(args, env=dict(OMP_NUM_THREADS='1'), check=check)


def load_preds(path):
    with open(path, 'rb') as f:
        return sorted(pickle.load(f), key=lambda p: p['img_id'])


def test_checkpoint_roundtrip_through_cli_and_test_deploy(
        tmp_path, shapes_root):
    config = shapes_repvgg_config(tmp_path, shapes_root)
    ckpt = str(tmp_path / 'trained.pth')
    model, meta = save_trained_like_checkpoint(config, ckpt)
    out = str(tmp_path / 'deploy' / 'repvgg_deploy.pth')

    proc = run_tool(['tools/reparameterize.py', config, ckpt, out])
    deploy_config = str(tmp_path / 'deploy' / 'repvgg_a0_shapes_deploy.py')
    assert deploy_config in proc.stdout and osp.isfile(deploy_config)

    # the checkpoint: meta kept, non-backbone weights untouched, optimizer
    # state of the training-form parameters dropped
    source = safe_load_checkpoint(ckpt)
    converted = safe_load_checkpoint(out)
    assert set(converted) == {'meta', 'state_dict'}
    for key, value in meta.items():
        assert converted['meta'][key] == value
    assert converted['meta']['reparameterized'] == dict(
        source=ckpt, modules=['backbone'])
    src, dst = source['state_dict'], converted['state_dict']
    outside = [k for k in src if not k.startswith('backbone.')]
    assert outside and all(torch.equal(dst[k], src[k]) for k in outside)
    backbone_keys = sorted(k for k in dst if k.startswith('backbone.'))
    assert len(backbone_keys) == 2 * 22
    assert all('.fused_conv.' in k for k in backbone_keys)
    assert set(dst) - set(backbone_keys) == set(outside)

    # the deploy config builds the fused model, which loads the checkpoint
    # strictly and predicts what the training-form model predicts
    cfg = Config.fromfile(deploy_config)
    assert cfg.model.backbone.deploy is True
    assert cfg.model.backbone.arch == 'A0'
    assert cfg.load_from == out
    deploy_model = MODELS.build(cfg.model)
    deploy_model.load_state_dict(dst, strict=True)
    deploy_model.eval()
    _, expected = predict(model, size=96)
    _, actual = predict(deploy_model, size=96)
    assert_same_predictions(actual, expected)

    # tools/test.py --deploy converts the training-form checkpoint on the
    # fly and predicts what the converted checkpoint + deploy config predict
    work = str(tmp_path / 'work')
    runs = {
        'on_the_fly': [config, ckpt, '--deploy'],
        'converted': [deploy_config, out],
    }
    preds = {}
    for name, args in runs.items():
        pkl = str(tmp_path / f'{name}.pkl')
        proc = run_tool(['tools/test.py', *args, '--work-dir', work,
                         '--out', pkl])
        log = proc.stdout + proc.stderr
        assert 'coco/bbox_mAP' in log
        assert ('inference form: re-parameterised backbone' in log) == (
            name == 'on_the_fly')
        preds[name] = load_preds(pkl)
    assert len(preds['converted']) == 4
    for a, b in zip(preds['on_the_fly'], preds['converted'], strict=True):
        assert a['img_id'] == b['img_id']
        assert_same_predictions(
            _instances(a['pred_instances']), _instances(b['pred_instances']))
        assert [m['counts'] for m in a['pred_instances']['masks']] == [
            m['counts'] for m in b['pred_instances']['masks']]


def _instances(pred):
    """The dumped prediction dict as an object with tensor attributes."""
    from mmengine.structures import InstanceData
    instances = InstanceData()
    instances.labels = torch.as_tensor(pred['labels'])
    instances.bboxes = torch.as_tensor(pred['bboxes'])
    instances.scores = torch.as_tensor(pred['scores'])
    return instances


def test_cli_refuses_groupnorm_checkpoint(tmp_path, shapes_root):
    config = shapes_repvgg_config(
        tmp_path, shapes_root, norm_cfg=dict(type='GN', num_groups=16))
    ckpt = str(tmp_path / 'gn.pth')
    save_trained_like_checkpoint(config, ckpt)
    out = str(tmp_path / 'gn_deploy.pth')
    # tools/reparameterize.py is run_cli(main): a one-line error, exit 1
    with pytest.raises(SystemExit) as exit_info:
        reparameterize_main([config, ckpt, out])
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith('error: ')
    assert "'stem.branch_3x3.gn' (GroupNorm)" in message
    assert 'model.backbone (RepVGG)' in message
    assert not osp.exists(out)
    assert not osp.exists(str(tmp_path / 'repvgg_a0_shapes_deploy.py'))
