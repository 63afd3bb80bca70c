"""The demo (make demo / tools/run_demo.py) on a tiny data set: it validates
during training, tests, and writes the loss/AP curves and the ground truth |
predictions grid; the class-duplicate count on hand-made boxes."""
import os.path as osp

import mmcv
import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import Config

from tests.helpers import ROOT, tiny_demo_data
from vovdet.analysis.demo_report import (class_duplicates,
                                         count_class_duplicates,
                                         plot_loss_and_ap,
                                         suppress_class_duplicates)
from vovdet.analysis.learning import logged_metrics
from vovdet.apis.demo import (DEMO_CONFIG, DEMO_ITERS, run_demo,
                               schedule_overrides)

# A: a rectangle; B: 90 % of A, called an ellipse; C: elsewhere, a triangle
BOXES = torch.tensor([[0., 0., 10., 10.], [1., 0., 10., 10.],
                      [20., 20., 30., 30.]])
SCORES = torch.tensor([0.9, 0.8, 0.7])
LABELS = torch.tensor([0, 1, 2])


def test_class_duplicates_counts_boxes_under_a_higher_other_class_box():
    # B overlaps A (IoU 0.9), scores lower and names another class
    assert class_duplicates(BOXES, SCORES, LABELS) == 1
    # the same class twice is NMS's business, not a class duplicate
    assert class_duplicates(BOXES, SCORES, torch.tensor([0, 0, 2])) == 0
    # a box below the score threshold is not drawn, so not counted
    assert class_duplicates(BOXES, torch.tensor([0.9, 0.2, 0.7]),
                            LABELS) == 0
    assert class_duplicates(BOXES, SCORES, LABELS, score_thr=0.85) == 0
    # IoU 50/150 = 0.33: two objects side by side
    apart = BOXES.clone()
    apart[1] = torch.tensor([5., 0., 15., 10.])
    assert class_duplicates(apart, SCORES, LABELS) == 0
    assert class_duplicates(apart, SCORES, LABELS, iou_thr=0.3) == 1
    # the higher-scoring of the pair is the original, whatever the order
    assert class_duplicates(BOXES.flip(0), SCORES.flip(0),
                            LABELS.flip(0)) == 1
    # equal scores: exactly one of the pair counts
    assert class_duplicates(BOXES, torch.tensor([0.8, 0.8, 0.7]),
                            LABELS) == 1
    # numpy input (as read back from a predictions file) and no boxes
    assert class_duplicates(BOXES.numpy(), SCORES.numpy(),
                            LABELS.numpy()) == 1
    assert class_duplicates(np.zeros((0, 4)), np.zeros(0),
                            np.zeros(0, int)) == 0


def test_count_class_duplicates_sums_over_images():
    image = dict(pred_instances=dict(bboxes=BOXES, scores=SCORES,
                                     labels=LABELS))
    empty = dict(pred_instances=dict(bboxes=torch.zeros(0, 4),
                                     scores=torch.zeros(0),
                                     labels=torch.zeros(0, dtype=int)))
    assert count_class_duplicates([image, empty, image]) == dict(
        detections=6, class_duplicates=2, one_label=4)
    assert count_class_duplicates([image], score_thr=0.75) == dict(
        detections=2, class_duplicates=1, one_label=1)


def test_suppress_class_duplicates_keeps_one_label_per_object():
    # B (ellipse) boxes A's object under A (rectangle): dropped
    assert suppress_class_duplicates(BOXES, SCORES, LABELS).tolist() == [
        True, False, True]
    # whatever the input order
    assert suppress_class_duplicates(BOXES.flip(0), SCORES.flip(0),
                                     LABELS.flip(0)).tolist() == [
                                         True, False, True]
    # the same class is NMS's business: kept
    assert suppress_class_duplicates(BOXES, SCORES,
                                     torch.tensor([0, 0, 2])).all()
    # greedy, as NMS: a box dropped by A drops nothing itself. D overlaps
    # B (IoU 0.6) but not A (IoU 0.29), so D stays
    chain = torch.tensor([[0., 0., 10., 10.], [3., 0., 13., 10.],
                          [5.5, 0., 15.5, 10.]])
    assert suppress_class_duplicates(chain, SCORES, LABELS).tolist() == [
        True, False, True]
    # ... while counting, D is a duplicate of B
    assert class_duplicates(chain, SCORES, LABELS) == 2
    assert suppress_class_duplicates(np.zeros((0, 4)), np.zeros(0),
                                     np.zeros(0, int)).shape == (0, )


def test_after_suppression_no_class_duplicate_is_left():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        corners = torch.rand(30, 2, generator=generator) * 50
        sizes = torch.rand(30, 2, generator=generator) * 20 + 5
        bboxes = torch.cat([corners, corners + sizes], dim=1)
        scores = torch.rand(30, generator=generator)
        labels = torch.randint(0, 4, (30, ), generator=generator)
        keep = suppress_class_duplicates(bboxes, scores, labels)
        assert class_duplicates(bboxes[keep], scores[keep], labels[keep],
                                score_thr=0) == 0
        # every box dropped had a kept, higher-scoring box of another class
        # on its object
        iou = bbox_overlaps(bboxes[~keep], bboxes[keep])
        covered = ((iou >= 0.5) &
                   (labels[~keep][:, None] != labels[keep][None]) &
                   (scores[~keep][:, None] <= scores[keep][None]))
        assert covered.any(dim=1).all()


def test_plot_loss_and_ap_without_validations_or_losses(tmp_path):
    path = str(tmp_path / 'curves.png')
    plot_loss_and_ap([(1, 3.0), (2, 2.0)], {}, path)
    assert mmcv.imread(path).shape[2] == 3
    # a run shorter than the logging interval logs no loss
    plot_loss_and_ap([], {'coco/bbox_mAP_50': [(2, 0.1)]}, path)
    assert mmcv.imread(path).shape[2] == 3


def tiny_demo(tmp_path, monkeypatch, *args):
    """run_demo on 4 + 2 images of 96 px, 4 iterations at batch 2, no
    loader workers, a loss logged every iteration."""
    monkeypatch.chdir(ROOT)
    tiny_demo_data(monkeypatch)
    return run_demo([
        '--data-root', str(tmp_path / 'shapes'), '--work-dir',
        str(tmp_path / 'work'), '--iters', '4', *args, '--cfg-options',
        'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0', 'default_hooks.logger.interval=1',
        'log_processor.window_size=1'
    ])


def test_demo_validates_tests_and_draws(tmp_path, monkeypatch, capsys):
    # an untrained model scores below 0.3: draw and count from 0.05
    result = tiny_demo(tmp_path, monkeypatch, '--val-interval', '2',
                       '--score-thr', '0.05')
    work = str(tmp_path / 'work')
    # --iters 4 trains 4 iterations
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    # validations at iterations 2 and 4, on the curve
    assert set(result['demo/val_ap50']) == {'coco/bbox_mAP_50',
                                            'coco/segm_mAP_50'}
    for points in result['demo/val_ap50'].values():
        assert [it for it, _ in points] == [2, 4]
        assert all(0 <= ap <= 1 for _, ap in points)
    # the last validation and the test evaluate the same checkpoint
    assert (result['demo/val_ap50']['coco/bbox_mAP_50'][-1][1] ==
            result['coco/bbox_mAP_50'])
    curves = mmcv.imread(result['demo/curves_png'])
    assert curves.ndim == 3 and curves.shape[0] > 100
    # 2 held-out images of 96 px drawn twice as large, ground truth |
    # predictions, under a 24 px header
    grid = mmcv.imread(result['demo/gt_vs_pred_png'])
    assert grid.shape == (24 + 2 * 192, 2 * 192, 3)
    assert result['demo/gt_vs_pred_png'] == osp.join(work, 'gt_vs_pred.png')
    duplicates = result['demo/class_duplicates']
    assert isinstance(duplicates, int)
    assert 0 <= duplicates <= max(result['demo/detections'] - 1, 0)
    # drawn with one label per object: only class duplicates are left out
    assert (result['demo/detections'] - duplicates <=
            result['demo/drawn_detections'] <= result['demo/detections'])
    out = capsys.readouterr().out
    assert f'class duplicates: {duplicates} of the' in out
    assert ('one label per object, as drawn, leaves '
            f"{result['demo/drawn_detections']}") in out
    assert result['demo/curves_png'] in out
    assert result['demo/gt_vs_pred_png'] in out


def test_demo_schedule_overrides_scale_the_config_schedule():
    # the cosine decay ends with the training, the warm-up keeps its 100
    config = osp.join(ROOT, DEMO_CONFIG)
    assert Config.fromfile(config).param_scheduler[0].end == 100
    assert schedule_overrides(config, DEMO_ITERS) == [
        f'train_cfg.max_iters={DEMO_ITERS}',
        f'param_scheduler.1.end={DEMO_ITERS}']
    # shorter than the warm-up: the decay starts at the last iteration
    assert schedule_overrides(config, 4) == [
        'train_cfg.max_iters=4', 'param_scheduler.1.end=4',
        'param_scheduler.1.begin=3']


def test_demo_without_validation(tmp_path, monkeypatch):
    result = tiny_demo(tmp_path, monkeypatch, '--val-interval', '0',
                       '--score-thr', '0.05', '--draw-class-duplicates')
    # every prediction above the threshold drawn
    assert result['demo/drawn_detections'] == result['demo/detections']
    assert result['demo/val_ap50'] == {}
    assert 'coco/bbox_mAP_50' in result
    # not even at the last iteration, where mmengine always validates
    assert logged_metrics(str(tmp_path / 'work')) == {}
    assert mmcv.imread(result['demo/curves_png']).ndim == 3
