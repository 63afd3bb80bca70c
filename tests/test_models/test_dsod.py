"""DSOD300 (DenseNet backbones and VoVNet-27-slim): sizes, scales, anchors,
loss, predictions, configs and the CPU tools."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData

import vovdet  # noqa: F401
from tests.helpers import shrink_loaders
from vovdet.analysis import get_complexity
from vovdet.analysis.learning import logged_losses

register_all_modules()

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
SHAPES = osp.join(CONFIGS, 'vovnet27slim_dsod160_shapes.py')

# Detector parameter counts (VOC, 20 classes). Paper: szq0214/DSOD README
# (DSOD300 14.8M, DSOD300_lite 10.4M, DSOD300_smallest 5.9M) and the VoVNet
# paper's Table 2 (DenseNet-67 and VoVNet-27-slim detectors, 5.9M each).
# Ours: learnable parameters, asserted exactly (docs/dsod.md).
DETECTORS = {
    'DSOD300': ('dsod300_voc07.py', None, 14.8e6, 14_715_804),
    'DSOD300-lite': ('dsod300_voc07.py', 'DSOD300-lite', 10.4e6, 10_536_252),
    'DenseNet-67': ('densenet67_dsod300_voc07.py', None, 5.9e6, 5_833_372),
    'VoVNet-27-slim': ('vovnet27slim_dsod300_voc07.py', None, 5.9e6,
                       5_971_932),
}


def load_cfg(name, arch=None):
    """A config, optionally with another DSODDenseNet arch wired in."""
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    if arch is not None:
        # DSOD's "First" width: stem 128 + 14 dense layers of growth k
        first = MODELS.build(dict(type='DSODDenseNet',
                                  arch=arch)).out_channels[0]
        cfg.model.backbone.arch = arch
        cfg.model.neck.in_channels = (first, 256)
        cfg.model.bbox_head.in_channels = (first, 512, 512, 256, 256, 256)
    return cfg


def build_detector(name, arch=None):
    cfg = load_cfg(name, arch)
    return MODELS.build(cfg.model)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('key', sorted(DETECTORS))
def test_detector_params_match_paper(key):
    config, arch, paper, exact = DETECTORS[key]
    count = num_params(build_detector(config, arch))
    assert count == pytest.approx(paper, rel=0.02)
    assert count == exact


@pytest.mark.parametrize('key, megabytes', [('DSOD300', 59.2),
                                             ('DenseNet-67', 23.5)])
def test_state_dict_matches_released_caffemodel_size(key, megabytes):
    # The README's download sizes are float32 Caffe blobs, BN statistics
    # included: Caffe's BatchNorm keeps mean, var and one moving-average
    # factor, i.e. running_mean, running_var, num_batches_tracked here.
    config, arch, _, _ = DETECTORS[key]
    state = build_detector(config, arch).state_dict()
    size = 4 * sum(v.numel() for v in state.values()) / 1e6
    assert round(size, 1) == megabytes


def test_dsod300_scales_shapes_and_channels():
    model = build_detector('dsod300_voc07.py').eval()
    backbone = MODELS.build(
        dict(type='DSODDenseNet', arch='DSOD300',
             out_indices=(0, 1, 2, 3))).eval()
    image = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        stages = backbone(image)
        scales = model.extract_feat(image)
    assert [tuple(s.shape[1:]) for s in stages] == [
        (416, 75, 75), (800, 38, 38), (1184, 19, 19), (256, 19, 19)]
    assert backbone.out_channels == (416, 800, 1184, 256)
    # the 3x3/2 conv (pad 1) and the 2x2/2 ceil max-pool both map 3 -> 2
    assert [tuple(s.shape[1:]) for s in scales] == [
        (800, 38, 38), (512, 19, 19), (512, 10, 10), (256, 5, 5),
        (256, 3, 3), (256, 2, 2)]
    assert model.neck.out_channels == (800, 512, 512, 256, 256, 256)


@pytest.mark.parametrize('name, channels, sizes', [
    ('densenet67_dsod300_voc07.py', (352, 512, 512, 256, 256, 256),
     (38, 19, 10, 5, 3, 2)),
    ('vovnet27slim_dsod300_voc07.py', (256, 384, 512, 256, 256, 256),
     (37, 18, 9, 5, 3, 2)),
])
def test_small_detectors_scales_at_300(name, channels, sizes):
    model = build_detector(name).eval()
    with torch.no_grad():
        scales = model.extract_feat(torch.rand(1, 3, 300, 300))
    assert tuple(s.shape[1] for s in scales) == channels
    assert tuple(s.shape[-1] for s in scales) == sizes
    assert all(s.shape[-2] == s.shape[-1] for s in scales)
    assert model.neck.out_channels == channels == model.bbox_head.in_channels


def test_anchors_per_scale_match_dsod():
    head = build_detector('dsod300_voc07.py').bbox_head
    assert head.num_base_priors == [4, 6, 6, 6, 4, 4]
    for conv, reg, anchors in zip(head.cls_convs, head.reg_convs,
                                  head.num_base_priors):
        assert conv.conv.out_channels == anchors * 21
        assert reg.conv.out_channels == anchors * 4
        assert conv.conv.bias is None and conv.norm_name == 'bn'
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (2, 2)]
    anchors = head.prior_generator.grid_priors(sizes, device='cpu')
    assert [len(a) for a in anchors] == [5776, 2166, 600, 150, 36, 16]
    # first scale: min 30, sqrt(30 * 60), and 30 at ratios 2 and 1/2,
    # centred at half the step of 8
    first = anchors[0][:4]
    wh = sorted((round(float(b[2] - b[0]), 2), round(float(b[3] - b[1]), 2))
                for b in first)
    r2 = 2**0.5
    assert wh == sorted([(30., 30.), (round(1800**0.5, 2),) * 2,
                         (round(30 * r2, 2), round(30 / r2, 2)),
                         (round(30 / r2, 2), round(30 * r2, 2))])
    assert torch.allclose((first[:, :2] + first[:, 2:]) / 2,
                          torch.tensor([4., 4.]))
    # last scale: steps 300, min 264 / max 315
    last = anchors[5][0]
    assert float(last[2] - last[0]) == pytest.approx(264)
    assert torch.allclose((last[:2] + last[2:]) / 2, torch.tensor([150.,
                                                                    150.]))


def test_every_prior_is_trained_as_in_caffe():
    # mmdet's SSDAnchorGenerator.valid_flags keeps ceil(300 / 300) = 1 of
    # the 2 x 2 locations of the last scale; Caffe's MultiBoxLoss trains all
    # priors (no valid mask, PriorBox clip=False)
    head = build_detector('dsod300_voc07.py').bbox_head
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (2, 2)]
    meta = [dict(img_shape=(300, 300), pad_shape=(300, 300))]
    valid = head.prior_generator.valid_flags(sizes, (300, 300), 'cpu')
    assert int(valid[5].sum()) == 4  # mmdet's flags: 1 location x 4 priors
    anchors, flags = head.get_anchors(sizes, meta, device='cpu')
    assert [len(f) for f in flags[0]] == [5776, 2166, 600, 150, 36, 16]
    assert all(bool(f.all()) for f in flags[0])
    # the 12 priors centred outside the image (150/450, as Caffe's) are
    # background candidates for hard negative mining, like every other
    # prior; with mmdet's flags their label weight would be 0 (untrained,
    # yet scored at test time)
    gt = InstanceData(bboxes=torch.tensor([[100., 100., 220., 220.]]),
                      labels=torch.tensor([3]))

    def last_scale(valid_flags):
        labels, weights = head.get_targets(anchors, valid_flags, [gt],
                                           meta)[:2]
        return (torch.cat([lab.view(-1) for lab in labels])[-16:],
                torch.cat([w.view(-1) for w in weights])[-16:])

    labels, weights = last_scale(flags)
    assert bool((weights > 0).all())
    assert bool((labels[4:] == head.num_classes).all())
    _, mmdet_weights = last_scale([list(valid)])
    assert int((mmdet_weights > 0).sum()) == 4


def test_pre_nms_top_k_is_per_class():
    # two classes; class 0 scores higher everywhere. mmdet's top-k over all
    # (prior, class) pairs would keep class 0 only; Caffe's keeps k of each
    from vovdet.models.dense_heads import per_class_topk
    scores = torch.stack([torch.linspace(0.9, 0.5, 10),
                          torch.linspace(0.4, 0.2, 10)], 1)
    kept, labels, inds = per_class_topk(scores, 0.25, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert inds.tolist() == [0, 1, 2, 0, 1, 2]
    torch.testing.assert_close(kept, scores[inds, labels])
    # the threshold applies before the top-k; -1 keeps every candidate
    kept, labels, _ = per_class_topk(scores, 0.25, -1)
    assert labels.tolist().count(0) == 10 and labels.tolist().count(1) == 7
    assert bool((kept > 0.25).all())


def test_head_l2norm_starts_at_20_on_every_scale():
    head = build_detector('densenet67_dsod300_voc07.py').bbox_head
    head.init_weights()
    assert len(head.l2_norms) == 6
    for norm, channels in zip(head.l2_norms, head.in_channels):
        assert norm.weight.shape == (channels, )
        assert torch.all(norm.weight == 20)
    x = torch.rand(1, 352, 4, 4) * 5
    out = head.l2_norms[0](x)
    assert torch.allclose(out.norm(dim=1), torch.full((1, 4, 4), 20.),
                          atol=1e-4)


def batch(model, size=128, num_images=2, num_classes=4):
    """Images with two boxes each, preprocessed like a data loader's."""
    samples, images = [], []
    gen = torch.Generator().manual_seed(0)
    for i in range(num_images):
        sample = DetDataSample()
        sample.set_metainfo(
            dict(img_shape=(size, size), ori_shape=(size, size),
                 pad_shape=(size, size), scale_factor=(1.0, 1.0),
                 batch_input_shape=(size, size)))
        gt = InstanceData()
        gt.bboxes = torch.tensor([[8., 10., 60., 70.],
                                  [50. + i, 40., 120., 100.]])
        gt.labels = torch.tensor([i % num_classes, num_classes - 1])
        sample.gt_instances = gt
        samples.append(sample)
        img = torch.randint(0, 255, (3, size, size), generator=gen,
                            dtype=torch.uint8)
        img[:, 10:70, 8:60] = 250
        images.append(img)
    return model.data_preprocessor(
        dict(inputs=images, data_samples=samples), training=True)


def test_loss_finite_and_decreasing():
    cfg = Config.fromfile(SHAPES)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    data = batch(model, size=128)
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(6):
        losses = model(**data, mode='loss')
        assert set(losses) == {'loss_cls', 'loss_bbox'}
        total = sum(sum(v) for v in losses.values())
        assert torch.isfinite(total)
        optim.zero_grad()
        total.backward()
        optim.step()
        totals.append(float(total))
    assert totals[-1] < 0.8 * totals[0], totals


def test_predict_in_image_coordinates():
    cfg = Config.fromfile(SHAPES)
    cfg.model.test_cfg.score_thr = 0.
    model = MODELS.build(cfg.model).eval()
    size, ori = (160, 160), (240, 320)
    scale = (size[1] / ori[1], size[0] / ori[0])
    sample = DetDataSample()
    sample.set_metainfo(
        dict(img_shape=size, ori_shape=ori, pad_shape=size,
             scale_factor=scale, batch_input_shape=size))
    inputs = torch.rand(1, 3, *size) * 255 - 120
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        image = model.bbox_head.predict(feats, [sample], rescale=True)[0]
        network = model.bbox_head.predict(feats, [sample], rescale=False)[0]
    assert len(image.bboxes) == 200
    assert torch.allclose(network.scores, image.scores)
    factor = torch.tensor([scale[0], scale[1], scale[0], scale[1]])
    assert torch.allclose(image.bboxes, network.bboxes / factor, atol=1e-3)
    assert float(network.bboxes.max()) <= 160
    assert float(image.bboxes[:, 0::2].max()) > 160
    assert float(image.bboxes[:, 0::2].max()) <= ori[1]
    assert float(image.bboxes[:, 1::2].max()) <= ori[0]
    assert float(image.bboxes.min()) >= 0

    # the detector's own predict: DetDataSamples carrying the same boxes
    with torch.no_grad():
        samples = model.predict(inputs, [sample.clone()], rescale=True)
    assert len(samples) == 1 and isinstance(samples[0], DetDataSample)
    pred = samples[0].pred_instances
    assert torch.allclose(pred.bboxes, image.bboxes)
    assert torch.equal(pred.labels, image.labels)


def test_neck_reused_half_and_validation():
    from vovdet.models import DSODNeck
    neck = DSODNeck((64, 32), (16, ), (8, 8)).eval()
    feats = (torch.rand(1, 64, 9, 9), torch.rand(1, 32, 5, 5))
    outs = neck(feats)
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 9, 9), (48, 5, 5),
                                                  (16, 3, 3), (16, 2, 2)]
    assert torch.equal(outs[0], feats[0])
    assert torch.equal(outs[1][:, :32], feats[1])
    plain = DSODNeck((64, 32), (0, ), (8, ))
    assert plain.out_channels == (64, 32, 16) and not plain.reused_halves
    with pytest.raises(ValueError, match='one entry per backbone map'):
        DSODNeck((64, 32, 16), (16, ), (8, ))
    with pytest.raises(ValueError, match='expects 2 backbone maps'):
        neck(feats[:1])


def test_backbone_freezing_and_unknown_arch():
    from torch.nn.modules.batchnorm import _BatchNorm
    model = MODELS.build(
        dict(type='DSODDenseNet', arch='DenseNet-67', frozen_stages=1,
             norm_eval=True))
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stage1.parameters())
    assert all(p.requires_grad for p in model.stage2.parameters())
    assert not model.stage1.training and model.stage2.training
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))
    with pytest.raises(ValueError, match="unknown DSODDenseNet arch 'D'"):
        MODELS.build(dict(type='DSODDenseNet', arch='D'))


def test_dsod_configs_follow_the_paper_recipe():
    for name in (f'{model}_{data}.py'
                 for model in ('dsod300', 'densenet67_dsod300',
                               'vovnet27slim_dsod300')
                 for data in ('voc07', 'voc0712')):
        cfg = Config.fromfile(osp.join(CONFIGS, name))
        assert cfg.optim_wrapper.optimizer.lr == 0.1
        assert cfg.optim_wrapper.optimizer.weight_decay == 5e-4
        assert cfg.train_cfg.max_iters == 100000
        assert cfg.param_scheduler[0].milestones == [20000, 40000, 60000,
                                                     80000]
        assert cfg.auto_scale_lr.base_batch_size == 128
        assert cfg.train_dataloader.batch_size * 8 == 128
        assert cfg.model.train_cfg.neg_pos_ratio == 3
        assert cfg.model.train_cfg.assigner.pos_iou_thr == 0.5
        assert cfg.model.test_cfg.nms.iou_threshold == 0.45
        assert cfg.model.test_cfg.max_per_img == 200
        # DSOD300_pascal.py nms_param top_k 400, per class (Caffe's
        # DetectionOutput; DSODHead applies nms_pre per class)
        assert cfg.model.test_cfg.nms_pre == 400
        assert cfg.model.bbox_head.l2_norm_scale == 20
        assert cfg.val_evaluator.type == 'VOCMetric'
        train = cfg.train_dataloader.dataset
        for dataset in train.get('datasets', [train]):
            # DSOD300_pascal.py: train_on_diff_gt = True
            assert [t['type'] for t in dataset.pipeline] == [
                'LoadImageFromFile', 'LoadAnnotations', 'UseDifficultGT',
                'Expand',
                'MinIoURandomCrop', 'Resize', 'RandomFlip',
                'PhotoMetricDistortion', 'PackDetInputs'
            ]
            assert dataset.pipeline[5].scale == (300, 300)
    both = Config.fromfile(
        osp.join(CONFIGS, 'vovnet27slim_dsod300_voc0712.py'))
    sets = both.train_dataloader.dataset
    assert sets.type == 'ConcatDataset'
    assert [d.ann_file for d in sets.datasets] == [
        'VOC2007/ImageSets/Main/trainval.txt',
        'VOC2012/ImageSets/Main/trainval.txt'
    ]
    coco = Config.fromfile(osp.join(CONFIGS, 'vovnet27slim_dsod300_coco.py'))
    assert coco.model.bbox_head.num_classes == 80
    assert coco.model.bbox_head.anchor_generator.min_sizes == [
        21, 45, 99, 153, 207, 261]
    assert coco.train_cfg.max_iters == 320000
    assert coco.val_evaluator.type == 'CocoMetric'


def test_train_tool_runs_shapes_config(tmp_path, shapes_root):
    cfg = Config.fromfile(SHAPES)
    cfg.train_cfg.max_iters = 2
    # validation is covered by test_learning_benchmark_end_to_end
    cfg.train_cfg.val_interval = 3
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=2)
    ]
    shrink_loaders(cfg, shapes_root, size=None)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor.window_size = 1
    path = str(tmp_path / 'tiny_dsod.py')
    cfg.dump(path)
    work = str(tmp_path / 'work')
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', path, '--work-dir', work],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    curve = logged_losses(work)['loss']
    assert [i for i, _ in curve] == [1, 2]
    assert all(torch.isfinite(torch.tensor(v)) for _, v in curve)


@pytest.mark.parametrize('key, flops, paper', [
    ('DenseNet-67', 5_297_838_848, 5.3),
    ('VoVNet-27-slim', 5_663_451_392, 5.6),
    # no published FLOPs; docs/dsod.md gives ours
    ('DSOD300', 15_079_798_528, None),
    ('DSOD300-lite', 10_506_219_328, None),
])
def test_flops_match_vovnet_table2_and_docs(key, flops, paper):
    name, arch, _, _ = DETECTORS[key]
    model = build_detector(name, arch)
    result = get_complexity(model, (3, 300, 300))
    if paper is not None:
        assert result.flops / 1e9 == pytest.approx(paper, rel=0.03)
    assert result.flops == flops
