"""RefineDet: anchors, TCB, ARM/ODM, negative anchor filtering, hard
negative mining, losses, prediction, the paper's Table 4 counts and the
configs."""
import glob
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
from vovdet.models.dense_heads import hard_negative_mining

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
SHAPES = osp.join(CONFIGS, 'vovnet19slim_refinedet192_shapes.py')


def build_config_model(path, **overrides):
    register_all_modules()
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(overrides)
    return MODELS.build(cfg.model)


def small_head(num_classes=2, **kwargs):
    """A head with narrow inputs; anchors, coder and losses as RefineDet."""
    cfg = dict(
        type='RefineDetHead',
        num_classes=num_classes,
        in_channels=(8, 8, 8, 8),
        feat_channels=8,
        inter_channels=None,
        train_cfg=Config.fromfile(SHAPES).model.train_cfg,
        test_cfg=dict(
            nms_pre=100000,
            score_thr=0.5,
            nms=dict(type='nms', iou_threshold=0.45),
            min_bbox_size=0,
            max_per_img=100000))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def constant_maps(head, size, arm_logits, odm_logits):
    """Head outputs with the same logits at every anchor, zero offsets.

    ``arm_logits`` may be a list with one (object, background) pair per
    level. Returns the four per-level lists of :meth:`RefineDetHead.forward`.
    """
    sizes = [size // s for s in (8, 16, 32, 64)]
    if not isinstance(arm_logits[0], (list, tuple)):
        arm_logits = [arm_logits] * len(sizes)
    outs = ([], [], [], [])
    for s, arm in zip(sizes, arm_logits):
        outs[0].append(torch.tensor(arm, dtype=torch.float).repeat(3)
                       .view(1, 6, 1, 1).expand(1, 6, s, s).clone()
                       .requires_grad_())
        outs[1].append(torch.zeros(1, 12, s, s, requires_grad=True))
        channels = 3 * len(odm_logits)
        outs[2].append(torch.tensor(odm_logits, dtype=torch.float).repeat(3)
                       .view(1, channels, 1, 1).expand(1, channels, s, s)
                       .clone().requires_grad_())
        outs[3].append(torch.zeros(1, 12, s, s, requires_grad=True))
    return outs


def detection_batch(model, size=96, ori_shape=None, boxes=None, labels=None):
    """One preprocessed image with ground truth, as a data loader gives."""
    ori_shape = ori_shape or (size, size)
    sample = DetDataSample()
    sample.set_metainfo(
        dict(img_shape=(size, size), ori_shape=ori_shape,
             pad_shape=(size, size),
             scale_factor=(size / ori_shape[1], size / ori_shape[0]),
             batch_input_shape=(size, size)))
    gt = InstanceData()
    gt.bboxes = torch.tensor(boxes or [[10., 12., 50., 60.],
                                       [40., 30., 90., 80.]])
    gt.labels = torch.tensor(labels or [0, 3])
    sample.gt_instances = gt
    generator = torch.Generator().manual_seed(0)
    img = torch.randint(0, 255, (3, size, size), dtype=torch.uint8,
                        generator=generator)
    return model.data_preprocessor(
        dict(inputs=[img], data_samples=[sample]), training=True)


# --- anchors --------------------------------------------------------------

@pytest.mark.parametrize('size,maps,total', [(320, (40, 20, 10, 5), 6375),
                                             (512, (64, 32, 16, 8), 16320)])
def test_anchor_counts_per_input_size(size, maps, total):
    model = build_config_model(SHAPES).eval()
    with torch.no_grad():
        arm_cls, _, odm_cls, _ = model(torch.rand(1, 3, size, size),
                                       mode='tensor')
    assert [tuple(m.shape[-2:]) for m in arm_cls] == [(s, s) for s in maps]
    assert [tuple(m.shape[-2:]) for m in odm_cls] == [(s, s) for s in maps]
    anchors = model.bbox_head.prior_generator.grid_priors(
        [m.shape[-2:] for m in arm_cls], device='cpu')
    assert [len(a) for a in anchors] == [3 * s * s for s in maps]
    assert sum(len(a) for a in anchors) == total


def test_anchors_are_4x_stride_with_ratios_1_2_half():
    head = small_head()
    anchors = head.prior_generator.grid_priors([(2, 2)] * 4, device='cpu')
    for level, stride in enumerate((8, 16, 32, 64)):
        first = anchors[level][:3]  # the three anchors of cell (0, 0)
        centres = (first[:, :2] + first[:, 2:]) / 2
        torch.testing.assert_close(centres,
                                   torch.full((3, 2), stride / 2.))
        w = first[:, 2] - first[:, 0]
        h = first[:, 3] - first[:, 1]
        torch.testing.assert_close(w * h, torch.full((3, ), 16. * stride**2))
        torch.testing.assert_close(
            torch.sort(h / w).values, torch.tensor([0.5, 1., 2.]))


# --- TCB ------------------------------------------------------------------

def test_tcb_shapes_and_extra_level():
    neck = MODELS.build(
        dict(type='RefineDetTCB', in_channels=(16, 24, 32), out_channels=8,
             extra_mid_channels=4)).eval()
    feats = [torch.rand(2, c, s, s) for c, s in zip((16, 24, 32),
                                                    (40, 20, 10))]
    with torch.no_grad():
        outs = neck(feats)
    assert neck.source_channels == (16, 24, 32, 16)
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 40, 40), (2, 24, 20, 20), (2, 32, 10, 10), (2, 16, 5, 5),
        (2, 8, 40, 40), (2, 8, 20, 20), (2, 8, 10, 10), (2, 8, 5, 5)
    ]
    for source, feat in zip(outs[:3], feats):
        assert source is feat  # the backbone maps go to the ARM unchanged
    # the TCB outputs end in ReLU
    assert all((o >= 0).all() for o in outs[4:])


def test_tcb_top_down_path_reaches_the_finest_level():
    neck = MODELS.build(
        dict(type='RefineDetTCB', in_channels=(8, 8, 8), out_channels=8,
             extra_mid_channels=2)).eval()
    feats = [torch.rand(1, 8, s, s) for s in (16, 8, 4)]
    with torch.no_grad():
        before = neck(feats)[4]
        # change only the coarsest backbone map: the stride-8 TCB output
        # changes through the extra level and three deconvolutions
        feats[2] = feats[2] + 1
        after = neck(feats)[4]
    assert not torch.allclose(before, after)


def test_without_transfer_connection_the_odm_reads_the_source_maps():
    # the RefineDet paper's Table 3 ablation: no TCB, so ARM and ODM share
    # the source maps; the ODM's inter blocks take their channels
    neck = MODELS.build(
        dict(type='RefineDetTCB', in_channels=(16, 24, 32), out_channels=8,
             extra_mid_channels=4, transfer_connection=False)).eval()
    feats = [torch.rand(1, c, s, s) for c, s in zip((16, 24, 32),
                                                    (40, 20, 10))]
    with torch.no_grad():
        outs = neck(feats)
    assert len(outs) == 8 and all(a is b for a, b in zip(outs[:4], outs[4:]))
    assert neck.odm_channels == neck.source_channels == (16, 24, 32, 16)
    assert not list(neck.lateral_convs.parameters())  # no unused TCB weights
    head = small_head(in_channels=(16, 24, 32, 16),
                      feat_channels=(16, 24, 32, 16))
    arm_cls, _, odm_cls, _ = head(outs)
    assert [tuple(m.shape) for m in odm_cls] == [
        (1, 9, 40, 40), (1, 9, 20, 20), (1, 9, 10, 10), (1, 9, 5, 5)]
    with pytest.raises(ValueError, match='one channel count per level'):
        small_head(feat_channels=(8, 8))


@pytest.mark.parametrize('name', ['vovnet19slim_refinedet192_shapes_no_tcb.py',
                                  'vovnet19slim_refinedet192_shapes_odm_only_'
                                  'no_tcb.py',
                                  'vovnet19slim_refinedet192_shapes_no_inter.py'])
def test_ablation_configs_build_and_train(name):
    model = build_config_model(osp.join(CONFIGS, name))
    model.init_weights()
    if 'no_tcb' in name:
        assert not model.neck.transfer_connection
    else:  # the official VGG-16 RefineDet head: no inter blocks
        assert model.neck.transfer_connection
        assert all(isinstance(block, torch.nn.Identity)
                   for block in model.bbox_head.odm_inter_blocks)
    losses = model(**detection_batch(model, size=192), mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    # the ODM's gradient reaches the backbone through the source maps
    assert model.backbone.stem[0].conv.weight.grad.abs().sum() > 0


def test_tcb_odd_sizes_are_matched():
    neck = MODELS.build(
        dict(type='RefineDetTCB', in_channels=(8, 8, 8), out_channels=8,
             extra_mid_channels=2)).eval()
    feats = [torch.rand(1, 8, s, s) for s in (38, 19, 10)]
    with torch.no_grad():
        outs = neck(feats)
    assert [o.shape[-1] for o in outs[4:]] == [38, 19, 10, 5]


def test_tcb_parameters_match_the_reconstruction():
    # paper_specs §2b: res6 (1024 -> 128-128-512, projection) = 870,912 and
    # the four 256-channel TCBs on 512/768/1024/512 sources = 12,000,768
    neck = MODELS.build(dict(type='RefineDetTCB'))
    extra = sum(p.numel() for p in neck.extra_block.parameters())
    total = sum(p.numel() for p in neck.parameters())
    assert extra == 870912
    assert total - extra == 12000768


def test_tcb_norm_is_configurable():
    gn = dict(type='GN', num_groups=2, requires_grad=True)
    neck = MODELS.build(dict(type='RefineDetTCB', in_channels=(8, 8, 8),
                             out_channels=8, extra_mid_channels=2,
                             norm_cfg=gn))
    norms = [m for m in neck.modules()
             if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))]
    # extra bottleneck 4 (3 + shortcut); TCBs 3 convs x 4 + 3 deconvs
    assert len(norms) == 4 + 12 + 3
    assert all(isinstance(m, torch.nn.GroupNorm) for m in norms)
    with pytest.raises(ValueError, match='norm layer'):
        MODELS.build(dict(type='RefineDetTCB', norm_cfg=None))


def test_tcb_rejects_wrong_number_of_maps():
    neck = MODELS.build(dict(type='RefineDetTCB', in_channels=(8, 8, 8),
                             out_channels=8, extra_mid_channels=2))
    with pytest.raises(ValueError, match='out_indices'):
        neck([torch.rand(1, 8, 4, 4)] * 2)


# --- ARM / ODM ------------------------------------------------------------

@pytest.mark.parametrize('inter_channels', [None, 4])
def test_arm_odm_output_shapes(inter_channels):
    head = small_head(num_classes=5, inter_channels=inter_channels).eval()
    sizes = (8, 4, 2, 1)
    x = tuple(torch.rand(2, 8, s, s) for s in sizes) * 2
    with torch.no_grad():
        arm_cls, arm_reg, odm_cls, odm_reg = head(x)
    for level, s in enumerate(sizes):
        assert arm_cls[level].shape == (2, 3 * 2, s, s)
        assert arm_reg[level].shape == (2, 3 * 4, s, s)
        assert odm_cls[level].shape == (2, 3 * 6, s, s)
        assert odm_reg[level].shape == (2, 3 * 4, s, s)
    if inter_channels:
        assert head.arm_cls_convs[0].in_channels == 16
        assert head.odm_cls_convs[0].in_channels == 16


def test_head_rejects_inputs_without_tcb_maps():
    head = small_head()
    with pytest.raises(ValueError, match='RefineDetTCB'):
        head(tuple(torch.rand(1, 8, 2, 2) for _ in range(4)))


def test_odm_decodes_from_refined_anchors():
    head = small_head()
    anchors = torch.tensor([[0., 0., 32., 32.]])
    # the ARM moves the anchor right by 10% of its width (/ variance 0.1)
    arm_deltas = torch.tensor([[[1., 0., 0., 0.]]])
    refined, keep = head.refine_anchors(anchors, torch.zeros(1, 1, 2),
                                        arm_deltas)
    torch.testing.assert_close(refined, torch.tensor([[[3.2, 0., 35.2,
                                                        32.]]]))
    assert keep.tolist() == [[True]]
    # the ODM's offsets are relative to the refined anchor: a second shift
    # of 10% of its width lands at +6.4 from the original anchor
    box = head.bbox_coder.decode(refined[0], torch.tensor([[1., 0., 0.,
                                                           0.]]))
    torch.testing.assert_close(box, torch.tensor([[6.4, 0., 38.4, 32.]]))


def test_without_cascade_the_odm_uses_the_original_anchors():
    # RefineDet paper, Table 3: "two-step cascaded regression" ablated; the
    # ARM still filters (background probability 0.995 > 0.99 drops anchor 1)
    head = small_head(cascade=False)
    anchors = torch.tensor([[0., 0., 32., 32.], [8., 8., 40., 40.]])
    arm_cls = torch.tensor([[[0., 0.], [0., 5.3]]])
    refined, keep = head.refine_anchors(anchors, arm_cls,
                                        torch.ones(1, 2, 4))
    torch.testing.assert_close(refined, anchors[None])
    assert keep.tolist() == [[True, False]]
    assert small_head().cascade


def test_arm_loss_weight_scales_only_the_arm_terms():
    # RefineDet paper Eq. (2): ARM and ODM terms weighed equally (1.0);
    # 0 is the "ARM off" ablation of docs/refinedet.md
    size = 64
    gt = InstanceData(bboxes=torch.tensor([[12., 12., 44., 44.]]),
                      labels=torch.tensor([1]))
    meta = [dict(img_shape=(size, size), pad_shape=(size, size))]
    equal = small_head(num_classes=2, cascade=False)
    maps = constant_maps(equal, size, [0., 1.], [0., 0., 0.])
    reference = equal.loss_by_feat(*maps, [gt], meta)
    for weight in (0.0, 0.5):
        losses = small_head(num_classes=2, cascade=False,
                            arm_loss_weight=weight).loss_by_feat(
                                *maps, [gt], meta)
        for key in ('loss_arm_cls', 'loss_arm_bbox'):
            torch.testing.assert_close(losses[key], reference[key] * weight)
        for key in ('loss_odm_cls', 'loss_odm_bbox'):
            torch.testing.assert_close(losses[key], reference[key])
    assert reference['loss_arm_cls'] > 0
    with pytest.raises(ValueError, match='arm_loss_weight must be >= 0'):
        small_head(arm_loss_weight=-1.0)


# --- negative anchor filtering ---------------------------------------------

def test_negative_filtering_removes_anchors_at_test_time():
    head = small_head(num_classes=2)
    size = 64
    # ARM background probability 1/(1+e^-8) > 0.99 on the stride-8 level,
    # 0.5 elsewhere; the ODM scores class 0 at 0.79 on every anchor
    arm = [[0., 8.], [0., 0.], [0., 0.], [0., 0.]]
    outs = constant_maps(head, size, arm, [2., 0., 0.])
    meta = [dict(img_shape=(size, size), ori_shape=(size, size),
                 scale_factor=(1., 1.))]
    kept = head.predict_by_feat(*outs, batch_img_metas=meta,
                                with_nms=False)[0]
    per_level = [3 * (size // s)**2 for s in (8, 16, 32, 64)]
    assert len(kept) == sum(per_level) - per_level[0]
    assert (kept.labels == 0).all()
    # with zero offsets the boxes are the anchors (clipped to the image):
    # every surviving box is one of the coarser levels' anchors
    anchors = head.prior_generator.grid_priors(
        [(size // s, size // s) for s in (8, 16, 32, 64)], device='cpu')
    coarse = torch.cat(anchors[1:]).clamp(0, size)
    assert torch.cdist(kept.bboxes, coarse).min(1).values.max() < 1e-4

    unfiltered = small_head(num_classes=2, neg_anchor_filter_thr=1.0)
    everything = unfiltered.predict_by_feat(*outs, batch_img_metas=meta,
                                            with_nms=False)[0]
    assert len(everything) == sum(per_level)


def test_negative_filtering_ignores_anchors_in_odm_training():
    head = small_head(num_classes=2)
    size = 64
    # a 32 px object centred on a stride-8 cell: every ODM positive (IoU
    # >= 0.5, or its best match) is a stride-8 anchor; the larger levels
    # reach IoU 0.25 at most
    gt = InstanceData(bboxes=torch.tensor([[12., 12., 44., 44.]]),
                      labels=torch.tensor([1]))
    meta = [dict(img_shape=(size, size), pad_shape=(size, size))]
    filtered = constant_maps(head, size,
                             [[0., 8.], [0., 0.], [0., 0.], [0., 0.]],
                             [0., 0., 0.])
    losses = head.loss_by_feat(*filtered, [gt], meta)
    # the ARM still learns from the object
    assert losses['loss_arm_cls'] > 0
    # Caffe's MineHardExamples (bbox_util.cpp): the filter removes negative
    # candidates only, so the filtered stride-8 positives still train the
    # ODM, with negatives mined from the unfiltered levels
    assert losses['loss_odm_cls'] > 0
    assert losses['loss_odm_bbox'] > 0

    kept = constant_maps(head, size, [0., 0.], [0., 0., 0.])
    unfiltered = head.loss_by_feat(*kept, [gt], meta)
    torch.testing.assert_close(unfiltered['loss_odm_bbox'],
                               losses['loss_odm_bbox'])


def test_arm_filter_removes_negative_candidates_only():
    head = small_head(num_classes=2)
    cls, deltas, targets, labels, valid = multibox_inputs(seed=2)
    keep = torch.ones(1, 40, dtype=torch.bool)
    keep[0, :2] = False  # two positives the ARM calls background
    keep[0, 4:20] = False  # and 16 negative candidates
    loss_cls, loss_bbox = head.multibox_loss(
        cls, deltas, labels, valid, targets, bg_label=2, neg_keep=keep)
    ce = torch.nn.functional.cross_entropy(cls[0], labels[0],
                                           reduction='none')
    # all 4 positives count (3 x 4 = 12 negatives, normaliser 4); the
    # negatives come from the 20 kept candidates only
    negatives = ce[20:].topk(12).values
    torch.testing.assert_close(loss_cls, (ce[:4].sum() + negatives.sum()) / 4)
    smooth_l1 = torch.nn.functional.smooth_l1_loss(
        deltas[0, :4], targets[0, :4], reduction='sum', beta=1.0)
    torch.testing.assert_close(loss_bbox, smooth_l1 / 4)


def test_predict_keeps_top_k_per_class_before_nms():
    # ODM scores: class 0 at 0.6 and class 1 at 0.3 on every anchor; with
    # nms_pre=5 Caffe's DetectionOutput keeps 5 of each class (an mmdet
    # top-k over all pairs would keep class 0 only)
    head = small_head(num_classes=2, neg_anchor_filter_thr=1.0)
    head.test_cfg.update(nms_pre=5, score_thr=0.1)
    size = 64
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).tolist()
    outs = constant_maps(head, size, [0., 0.], logits)
    meta = [dict(img_shape=(size, size), ori_shape=(size, size),
                 scale_factor=(1., 1.))]
    kept = head.predict_by_feat(*outs, batch_img_metas=meta,
                                with_nms=False)[0]
    assert kept.labels.tolist().count(0) == 5
    assert kept.labels.tolist().count(1) == 5


# --- hard negative mining ---------------------------------------------------

def test_odm_without_arm_has_mmdet_ssd_loss():
    # With the ARM off (no training, no cascade, no filtering) the ODM's
    # MultiBox loss is mmdet's SSDHead loss on the same predictions: the
    # matching, the 3:1 mining and the normalisation are SSD's
    # (docs/refinedet.md, "Learning parity").
    ssd_cfg = Config.fromfile(
        osp.join(CONFIGS, 'vovnet19slim_ssd192_shapes.py')).model
    ssd = MODELS.build(
        dict(ssd_cfg.bbox_head, in_channels=(8, 8, 8, 8),
             train_cfg=ssd_cfg.train_cfg))
    odm = small_head(num_classes=4, cascade=False, arm_loss_weight=0.,
                     neg_anchor_filter_thr=1.)
    generator = torch.Generator().manual_seed(0)
    sizes = [24, 12, 6, 3]
    cls = [torch.randn(2, 15, s, s, generator=generator) for s in sizes]
    reg = [torch.randn(2, 12, s, s, generator=generator) / 2 for s in sizes]
    arm = [torch.randn(2, c, s, s, generator=generator)
           for s in sizes for c in (6, 12)]
    gts = []
    for i in range(2):
        gt = InstanceData()
        gt.bboxes = torch.tensor([[10., 12., 60., 70.],
                                  [90., 30., 150., 120.]]) + 5 * i
        gt.labels = torch.tensor([0, 3 - i])
        gts.append(gt)
    metas = [dict(img_shape=(192, 192), pad_shape=(192, 192))] * 2
    expected = ssd.loss_by_feat(cls, reg, gts, metas)
    losses = odm.loss_by_feat(arm[0::2], arm[1::2], cls, reg, gts, metas)
    assert losses['loss_arm_cls'] == 0 and losses['loss_arm_bbox'] == 0
    for ours, theirs in (('loss_odm_cls', 'loss_cls'),
                         ('loss_odm_bbox', 'loss_bbox')):
        assert float(losses[ours]) == pytest.approx(
            float(sum(expected[theirs])), rel=1e-5)


def test_hard_negative_mining_keeps_at_most_3x_the_hardest():
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(3, 200, generator=generator)
    pos = torch.zeros(3, 200, dtype=torch.bool)
    pos[0, :5] = True  # 5 positives -> 15 negatives
    pos[1, :80] = True  # 80 positives -> all 120 candidates
    neg = ~pos
    neg[2, 100:] = False  # image without positives -> no negatives
    chosen = hard_negative_mining(losses, pos, neg, 3)
    assert chosen.sum(1).tolist() == [15, 120, 0]
    assert not (chosen & ~neg).any()
    for i in range(3):
        count = int(chosen[i].sum())
        assert count <= 3 * int(pos[i].sum())
        if count:
            hardest = losses[i][neg[i]].topk(count).values
            torch.testing.assert_close(
                losses[i][chosen[i]].sort(descending=True).values, hardest)


def multibox_inputs(seed):
    """40 priors of one image, 2 classes + background: random logits,
    offsets and targets; priors 0-3 positive (classes 0, 1, 0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    cls = torch.randn(1, 40, 3, generator=generator)
    deltas = torch.randn(1, 40, 4, generator=generator)
    targets = torch.randn(1, 40, 4, generator=generator)
    labels = torch.full((1, 40), 2)
    labels[0, :4] = torch.tensor([0, 1, 0, 1])
    return cls, deltas, targets, labels, torch.ones(1, 40, dtype=torch.bool)


def test_multibox_loss_is_normalised_by_positives():
    head = small_head(num_classes=2)
    cls, deltas, targets, labels, valid = multibox_inputs(seed=1)
    valid[0, 30:] = False  # ignored anchors are never mined
    loss_cls, loss_bbox = head.multibox_loss(cls, deltas, labels, valid,
                                             targets, bg_label=2)
    ce = torch.nn.functional.cross_entropy(cls[0], labels[0],
                                           reduction='none')
    negatives = ce[4:30].topk(12).values
    torch.testing.assert_close(loss_cls, (ce[:4].sum() + negatives.sum()) / 4)
    smooth_l1 = torch.nn.functional.smooth_l1_loss(
        deltas[0, :4], targets[0, :4], reduction='sum', beta=1.0)
    torch.testing.assert_close(loss_bbox, smooth_l1 / 4)


# --- detector: loss and predict ---------------------------------------------

def test_loss_is_finite_and_decreases_on_a_tiny_batch():
    model = build_config_model(SHAPES)
    model.init_weights()
    model.train()
    data = detection_batch(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
    totals = []
    for _ in range(7):
        losses = model(**data, mode='loss')
        assert set(losses) == {'loss_arm_cls', 'loss_arm_bbox',
                               'loss_odm_cls', 'loss_odm_bbox'}
        total = sum(losses.values())
        assert torch.isfinite(total)
        totals.append(float(total))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert totals[-1] < 0.6 * totals[0]


def test_predict_returns_datasamples_in_image_coordinates():
    model = build_config_model(SHAPES).eval()
    # a 150 x 120 (w x h) image resized to 96 x 96
    data = detection_batch(model, ori_shape=(120, 150))
    with torch.no_grad():
        results = model(data['inputs'], data['data_samples'],
                        mode='predict')
        feats = model.extract_feat(data['inputs'])
        unscaled = model.bbox_head.predict(feats, data['data_samples'],
                                           rescale=False)[0]
    assert len(results) == 1 and isinstance(results[0], DetDataSample)
    pred = results[0].pred_instances
    assert len(pred) > 0 and len(pred) <= 100  # shapes test_cfg keeps 100
    assert pred.bboxes.shape == (len(pred), 4)
    assert ((pred.scores >= 0.01) & (pred.scores <= 1)).all()
    assert ((pred.labels >= 0) & (pred.labels < 4)).all()
    # clipped to the 96 x 96 input, then mapped back to 150 x 120
    assert (pred.bboxes >= 0).all()
    assert (pred.bboxes[:, 0::2] <= 150 + 1e-3).all()
    assert (pred.bboxes[:, 1::2] <= 120 + 1e-3).all()
    scale = torch.tensor([96 / 150, 96 / 120] * 2)
    torch.testing.assert_close(pred.bboxes * scale, unscaled.bboxes)


def test_detector_checks_neck_and_head_agree():
    cfg = Config.fromfile(SHAPES)
    cfg.model.bbox_head.in_channels = (256, 384, 512, 512)
    with pytest.raises(ValueError, match='in_channels=\\(256, 384, 512, 256'):
        MODELS.build(cfg.model)
    cfg = Config.fromfile(SHAPES)
    cfg.model.neck.transfer_connection = False
    with pytest.raises(ValueError,
                       match='feat_channels=\\(256, 384, 512, 256\\)'):
        MODELS.build(cfg.model)
    cfg = Config.fromfile(SHAPES)
    cfg.model.neck = None
    with pytest.raises(ValueError, match='RefineDetTCB'):
        MODELS.build(cfg.model)


# --- the VoVNet paper's Table 4 -------------------------------------------

def table4_model(config, **overrides):
    """A Table 4 (``*_imagenet``) config's model, without loading the
    ImageNet weights (the architecture is what is counted)."""
    return build_config_model(
        osp.join(CONFIGS, config),
        **{'model.backbone.init_cfg': None, **overrides})


@pytest.mark.parametrize('config,params,gflops', [
    ('vovnet39_refinedet320_coco_imagenet.py', 56283844, 32.6),
    ('vovnet57_refinedet320_coco_imagenet.py', 70323844, 36.45),
])
def test_vovnet_refinedet320_params_and_flops_match_paper(
        config, params, gflops):
    # the paper's Caffe stem for its FLOPs (timm's weights use the PyTorch
    # stem; same parameters)
    model = table4_model(config,
                         **{'model.backbone.stem_stride_mode': 'paper'})
    result = get_complexity(model, (3, 320, 320))
    # Table 4: 56.28M / 70.32M (81 classes, inter blocks); our count is
    # the exact reconstruction of paper_specs §2b
    assert abs(result.params - params) <= 0.05e6
    assert result.params == params
    assert abs(result.flops / 1e9 - gflops) <= 0.02 * gflops
    assert not result.not_run and not result.uncounted


def test_resnet50_refinedet320_params_and_flops_match_paper():
    # the paper's Caffe (MSRA) layout for its FLOPs; torchvision's ImageNet
    # weights of the Table 4 config use the PyTorch layout, same parameters
    model = table4_model('resnet50_refinedet320_coco_imagenet.py',
                         **{'model.backbone.style': 'caffe'})
    result = get_complexity(model, (3, 320, 320))
    # Table 4: 63.46M, 25.43 GFLOPs
    assert abs(result.params - 63.46e6) <= 0.05e6
    assert abs(result.flops / 1e9 - 25.43) <= 0.02 * 25.43


def test_densenet201_refinedet320_params_and_flops_match_paper():
    model = table4_model('densenet201_refinedet320_coco_imagenet.py')
    result = get_complexity(model, (3, 320, 320))
    # Table 4: 56.13M, 24.65 GFLOPs, with the sources at the transition
    # convs (256/896 channels) and the end of dense block 4 (1920)
    assert model.backbone.out_channels == (256, 896, 1920)
    assert abs(result.params - 56.13e6) <= 0.05e6
    assert result.params == 56127428
    assert abs(result.flops / 1e9 - 24.65) <= 0.02 * 24.65
    assert result.flops == 24_584_524_800  # docs/refinedet.md: 24.58
    assert not result.not_run and not result.uncounted


@pytest.mark.parametrize('scratch', [
    'vovnet39_refinedet320_coco.py', 'vovnet57_refinedet320_coco.py',
    'resnet50_refinedet320_coco.py', 'densenet201_refinedet320_coco.py',
    'vovnet39_refinedet320_voc07.py'
])
def test_scratch_configs_train_the_table4_architecture(scratch):
    # the recipes differ in the initialisation and the solver only
    table4 = scratch.replace('.py', '_imagenet.py')
    assert num_params(build_config_model(
        osp.join(CONFIGS, scratch))) == num_params(table4_model(table4))


def test_bn_after_prediction_convs_is_an_option():
    # ScratchDet's SSDBNHead: each 3x3 prediction conv loses its bias and
    # gains a BN (weight + bias): + out_channels parameters per conv
    plain = small_head(num_classes=2)
    bn = small_head(num_classes=2,
                    pred_norm_cfg=dict(type='BN', requires_grad=True))
    convs = [m for name in ('arm_cls_convs', 'arm_reg_convs',
                            'odm_cls_convs', 'odm_reg_convs')
             for m in getattr(plain, name)]
    assert all(isinstance(conv, torch.nn.Conv2d) for conv in convs)
    assert num_params(bn) == num_params(plain) + sum(
        conv.out_channels for conv in convs)
    for conv in bn.odm_cls_convs:
        assert conv.conv.bias is None and conv.norm_name == 'bn'
    outs = bn(tuple(torch.rand(2, 8, s, s) for s in (8, 4, 2, 1)) * 2)
    assert outs[2][0].shape == (2, 9, 8, 8)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_without_inter_blocks_and_with_voc_classes():
    # paper_specs §2b: 49.65M with 21 classes (VOC)
    voc = table4_model('vovnet39_refinedet320_voc07_imagenet.py')
    assert num_params(voc) == 49647604
    plain = table4_model('vovnet39_refinedet320_coco_imagenet.py',
                         **{'model.bbox_head.inter_channels': None})
    assert isinstance(plain.bbox_head.arm_inter_blocks[0], torch.nn.Identity)
    # paper_specs §2b: 37.25M with the heads straight on the
    # 512/768/1024/512 sources and the 256-channel TCBs
    assert sum(p.numel() for p in plain.parameters()) == 37254340


# --- configs -----------------------------------------------------------------

def test_refinedet_configs_follow_the_official_recipes():
    names = {osp.basename(p) for p in
             glob.glob(osp.join(CONFIGS, '*refinedet*.py'))}
    assert {'vovnet39_refinedet320_coco.py', 'vovnet39_refinedet512_coco.py',
            'vovnet57_refinedet320_coco.py', 'resnet50_refinedet320_coco.py',
            'densenet201_refinedet320_coco.py',
            'vovnet39_refinedet320_voc07.py',
            'vovnet39_refinedet320_voc0712.py',
            'vovnet39_refinedet320_coco_imagenet.py',
            'vovnet57_refinedet320_coco_imagenet.py',
            'resnet50_refinedet320_coco_imagenet.py',
            'densenet201_refinedet320_coco_imagenet.py',
            'vovnet39_refinedet320_voc07_imagenet.py',
            'vovnet19slim_refinedet192_shapes.py'} <= names
    load = lambda name: Config.fromfile(osp.join(CONFIGS, name))  # noqa
    coco, coco_in = (load('vovnet39_refinedet320_coco.py'),
                     load('vovnet39_refinedet320_coco_imagenet.py'))
    voc, voc_in = (load('vovnet39_refinedet320_voc07.py'),
                   load('vovnet39_refinedet320_voc07_imagenet.py'))
    for cfg in (coco, coco_in, voc, voc_in):
        assert cfg.model.type == 'RefineDet'
        # ODM 0.5/0.5 on every dataset (the Caffe scripts' multibox params)
        assert cfg.model.train_cfg.odm_assigner.pos_iou_thr == 0.5
        assert cfg.model.train_cfg.odm_assigner.neg_iou_thr == 0.5
        assert cfg.model.train_cfg.neg_pos_ratio == 3
        assert cfg.model.bbox_head.neg_anchor_filter_thr == 0.99
        # DetectionOutput of VoV39_COCO_320.py and VoV39_VOC2007_320.py:
        # confidence 0.01, top_k 1000 per class, NMS 0.45, keep_top_k 500
        assert cfg.model.test_cfg.score_thr == 0.01
        assert cfg.model.test_cfg.nms.iou_threshold == 0.45
        assert cfg.model.test_cfg.nms_pre == 1000
        assert cfg.model.test_cfg.max_per_img == 500
        assert cfg.load_from is None
    # ARM matching: 0.5/0.5 on COCO (VoV39_COCO_320.py copies the ODM's
    # multibox_loss_param), 0.7/0.3 on VOC (VoV39_VOC2007_320.py, #ywlee)
    for cfg in (coco, coco_in):
        assert cfg.model.train_cfg.arm_assigner.pos_iou_thr == 0.5
        assert cfg.model.train_cfg.arm_assigner.neg_iou_thr == 0.5
    for cfg in (voc, voc_in):
        assert cfg.model.train_cfg.arm_assigner.pos_iou_thr == 0.7
        assert cfg.model.train_cfg.arm_assigner.neg_iou_thr == 0.3
        assert cfg.model.bbox_head.num_classes == 20
        assert cfg.train_dataloader.dataset.ann_file.startswith('VOC2007/')
        assert sorted(m.eval_mode for m in cfg.val_evaluator) == [
            '11points', 'area']
        # VoV39_VOC2007_320.py: train_on_diff_gt = False
        assert 'UseDifficultGT' not in [
            t['type'] for t in cfg.train_dataloader.dataset.pipeline]

    # from scratch: BN after every conv but the prediction convs, and
    # ScratchDet's solver (caffe/ssd_pascal.py,
    # mmdetection/configs/ssd300_scratchdet_coco.py)
    bn = dict(type='BN', requires_grad=True)
    for cfg in (coco, voc):
        assert cfg.model.bbox_head.get('pred_norm_cfg') is None
        assert cfg.model.neck.norm_cfg == bn
        assert cfg.model.bbox_head.norm_cfg == bn
        assert cfg.model.backbone.norm_cfg == bn
        assert 'init_cfg' not in cfg.model.backbone
        assert cfg.optim_wrapper.optimizer.lr == 0.05
        assert cfg.optim_wrapper.optimizer.momentum == 0.9
        assert cfg.optim_wrapper.optimizer.weight_decay == 5e-4
        assert cfg.auto_scale_lr.base_batch_size == 128
        assert cfg.train_dataloader.batch_size * 8 == 128
        warmup = cfg.param_scheduler[0]
        assert (warmup.type, warmup.start_factor, warmup.end) == (
            'LinearLR', 1 / 3, 500)
    assert voc.param_scheduler[1].milestones == [40000, 75000, 90000]
    assert voc.train_cfg.max_iters == 100000
    assert coco.param_scheduler[1].milestones == [34, 46, 50]
    assert coco.train_cfg.max_epochs == 52
    assert coco.train_dataloader.dataset.type == 'RepeatDataset'
    assert coco.train_dataloader.dataset.times == 5

    # fine-tuned from ImageNet (Table 4): Caffe's heads and solver
    for cfg in (coco_in, voc_in):
        assert cfg.model.bbox_head.get('pred_norm_cfg') is None
        assert cfg.model.backbone.init_cfg.type == 'Pretrained'
        assert cfg.model.backbone.stem_stride_mode == 'pytorch'
        assert cfg.optim_wrapper.optimizer.lr == 1e-3
        assert cfg.train_dataloader.batch_size * 4 == 32
        assert len(cfg.param_scheduler) == 1  # no warm-up
    assert coco_in.param_scheduler[0].milestones == [280000, 360000]
    assert coco_in.train_cfg.max_iters == 400000
    assert voc_in.param_scheduler[0].milestones == [80000, 100000]
    assert voc_in.train_cfg.max_iters == 120000
    assert voc_in.optim_wrapper.optimizer.weight_decay == 1e-4

    steps = [t['type'] for t in coco.train_dataloader.dataset.dataset.pipeline]
    assert steps == ['LoadImageFromFile', 'LoadAnnotations',
                     'PhotoMetricDistortion', 'Expand', 'MinIoURandomCrop',
                     'Resize', 'RandomFlip', 'PackDetInputs']
    big = load('vovnet39_refinedet512_coco.py')
    for pipeline in (big.train_dataloader.dataset.dataset.pipeline,
                     big.test_dataloader.dataset.pipeline):
        resize = [t for t in pipeline if t['type'] == 'Resize']
        assert resize[0].scale == (512, 512)
    voc0712 = load('vovnet39_refinedet320_voc0712.py')
    years = [d.ann_file.split('/')[0]
             for d in voc0712.train_dataloader.dataset.datasets]
    assert years == ['VOC2007', 'VOC2012']


def test_shapes_config_trains_through_tools_train(tmp_path, shapes_root):
    cfg = Config.fromfile(SHAPES)
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=2)
    ]
    shrink_loaders(cfg, shapes_root)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 2
    cfg.log_processor.window_size = 1
    path = str(tmp_path / 'tiny_refinedet.py')
    cfg.dump(path)
    work = str(tmp_path / 'work')
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', path, '--work-dir', work],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    log = proc.stdout + proc.stderr
    for key in ('loss_arm_cls', 'loss_odm_cls', 'voc_11points/AP50',
                'voc_area/AP50'):
        assert key in log


# --- from scratch and ImageNet-initialised configs train ------------------

def converted_vovnet39a(tmp_path):
    """timm's vovnet39a key layout with deterministic weights, converted by
    the converter behind tools/convert_weights.py."""
    from tests.fixtures.weights.synthetic_weights import synthetic_state_dict
    from tests.test_tools.test_convert_weights import (FIXTURE_DIR,
                                                       load_fixture,
                                                       shapes_of)
    from vovdet.models.converters import convert_checkpoint
    fixture = load_fixture(osp.join(FIXTURE_DIR, 'timm-vovnet39a.json.gz'))
    source = tmp_path / 'vovnet39a.pth'
    torch.save(synthetic_state_dict(shapes_of(fixture['keys'])), source)
    out = tmp_path / 'vovnet39a_vovdet.pth'
    convert_checkpoint('timm', 'vovnet39a', str(source), str(out))
    return str(out)


@pytest.mark.parametrize('name', ['vovnet39_refinedet320_coco.py',
                                  'vovnet39_refinedet320_coco_imagenet.py'])
def test_scratch_and_imagenet_configs_run_a_training_step(name, tmp_path):
    overrides = {}
    if name.endswith('_imagenet.py'):
        overrides['model.backbone.init_cfg.checkpoint'] = converted_vovnet39a(
            tmp_path)
    model = build_config_model(osp.join(CONFIGS, name), **overrides)
    model.init_weights()
    if overrides:
        converted = torch.load(overrides['model.backbone.init_cfg.checkpoint'],
                               weights_only=True)['state_dict']
        state = model.backbone.state_dict()
        assert set(converted) == set(state)
        for key, value in converted.items():
            assert torch.equal(state[key], value), key
    model.train()
    data = detection_batch(model, size=96, labels=[0, 79])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    before = {k: v.clone() for k, v in
              model.bbox_head.odm_cls_convs[0].state_dict().items()}
    losses = model(**data, mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    after = model.bbox_head.odm_cls_convs[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
