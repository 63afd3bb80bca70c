"""What the demo shows besides its COCO table (``vovdet.apis.demo``).

* :func:`plot_loss_and_ap`: the training loss and the held-out AP50 of each
  validation against the iteration, one PNG;
* :func:`draw_gt_vs_pred`: ground truth next to predictions for a few
  held-out images, one PNG, drawn by mmdet's ``DetLocalVisualizer``;
* :func:`class_duplicates` / :func:`count_class_duplicates`: predictions
  that box an object another, higher-scoring prediction of a *different*
  class already boxes (one shape reported as a rectangle, an ellipse and a
  hexagon at once). mmdet's Mask R-CNN runs NMS per class
  (``multiclass_nms``, ``class_agnostic=False``), so such boxes survive it;
  counting them measures how often the classifier hesitates. Class-agnostic
  NMS in the model removes them but lowers bbox AP50 (0.822 -> 0.720 on the
  1,300-iteration demo, 0.554 -> 0.400 at 600 iterations; issue #13): AP
  credits the right class even when it is the second guess;
* :func:`suppress_class_duplicates`: keeps one label per object for
  *drawing* (the demo's pictures, ``tools/infer.py --agnostic-nms``), so a
  picture shows the model's best guess once while AP is still measured on
  the per-class output.

The predictions are the test step's ``--out`` file (mmdet's
``DumpDetResults``: per image ``img_id``, ``img_path`` and
``pred_instances`` with ``bboxes``, ``scores``, ``labels`` and RLE
``masks``).
"""
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

# IoU from which two predictions box the same object (class_duplicates)
CLASS_DUPLICATE_IOU = 0.5


def _ranked_conflicts(bboxes, scores, labels, iou_thr: float,
                      score_thr: Optional[float] = None):
    """The boxes scoring at least ``score_thr`` (all if None) ranked by
    descending score (ties in input order) and, in that order, which pairs
    are of different classes and overlap with IoU at least ``iou_thr``:
    the ``(n, )`` ranking (indices into those boxes) and the ``(n, n)``
    bool matrix. On the CPU whatever the inputs' device."""
    from mmdet.structures.bbox import bbox_overlaps

    scores = torch.as_tensor(scores, dtype=torch.float32).cpu()
    bboxes = torch.as_tensor(bboxes, dtype=torch.float32).cpu()
    labels = torch.as_tensor(labels).cpu()
    if score_thr is not None:
        shown = scores >= score_thr
        scores, bboxes, labels = scores[shown], bboxes[shown], labels[shown]
    order = torch.argsort(scores, descending=True, stable=True)
    bboxes, labels = bboxes[order], labels[order]
    return order, ((bbox_overlaps(bboxes, bboxes) >= iou_thr) &
                   (labels[:, None] != labels[None, :]))


def class_duplicates(bboxes, scores, labels, score_thr: float = 0.3,
                     iou_thr: float = CLASS_DUPLICATE_IOU) -> int:
    """The class duplicates among one image's predictions.

    Of the boxes scoring at least ``score_thr`` (those drawn), a box counts
    as a class duplicate when a box ranked above it has a different label
    and an IoU of at least ``iou_thr`` with it. Boxes are ranked by score,
    equal scores by their order in the input, so of two boxes that
    duplicate each other exactly one counts.

    Args:
        bboxes (Tensor | ndarray): ``(n, 4)`` boxes, ``x1, y1, x2, y2``.
        scores (Tensor | ndarray): ``(n, )`` scores.
        labels (Tensor | ndarray): ``(n, )`` class indices.
        score_thr (float): Boxes below it are ignored.
        iou_thr (float): Overlap from which two boxes box the same object.

    Returns:
        int: The number of duplicates (0 .. boxes above ``score_thr`` - 1).
    """
    _, conflicts = _ranked_conflicts(bboxes, scores, labels, iou_thr,
                                     score_thr)
    return _count_ranked_duplicates(conflicts)


def _count_ranked_duplicates(conflicts) -> int:
    """How many ranked boxes conflict with one ranked above them
    (``conflicts`` as :func:`_ranked_conflicts` returns)."""
    # row i, column j < i: box j ranks above box i
    return int(conflicts.tril(-1).any(dim=1).sum())


def suppress_class_duplicates(bboxes, scores, labels,
                              iou_thr: float = CLASS_DUPLICATE_IOU):
    """Which predictions to keep so that no class duplicates are left.

    Greedy over the boxes by descending score: a box is dropped when a kept,
    higher-ranked box of a *different* class overlaps it with IoU at least
    ``iou_thr``; boxes of the same class are left to the detector's own
    NMS. On per-class NMS output this is class-agnostic NMS (mmcv's
    ``batched_nms`` with ``class_agnostic=True``) at the same threshold,
    applied after the fact; afterwards :func:`class_duplicates` counts 0
    at every score threshold.

    Args:
        bboxes (Tensor | ndarray): ``(n, 4)`` boxes, ``x1, y1, x2, y2``.
        scores (Tensor | ndarray): ``(n, )`` scores.
        labels (Tensor | ndarray): ``(n, )`` class indices.
        iou_thr (float): Overlap from which two boxes box the same object.

    Returns:
        Tensor: ``(n, )`` bool on the CPU, True for the boxes kept, in
        input order.
    """
    order, conflicts = _ranked_conflicts(bboxes, scores, labels, iou_thr)
    keep = torch.zeros(len(order), dtype=torch.bool)
    keep[order] = _greedy_keep(conflicts)
    return keep


def _greedy_keep(conflicts):
    """Greedy over ranked boxes: keep a box unless a kept box above it
    conflicts with it. ``conflicts`` as :func:`_ranked_conflicts` returns;
    the result is in the same (ranked) order."""
    kept = torch.zeros(len(conflicts), dtype=torch.bool)
    dropped = torch.zeros(len(conflicts), dtype=torch.bool)
    for i in range(len(conflicts)):
        if not dropped[i]:
            kept[i] = True
            dropped |= conflicts[i]
    return kept


def count_class_duplicates(
        predictions: Sequence[Dict],
        score_thr: float = 0.3,
        iou_thr: float = CLASS_DUPLICATE_IOU) -> Dict[str, int]:
    """:func:`class_duplicates` summed over the images of ``predictions``.

    Args:
        predictions (list[dict]): mmdet's ``DumpDetResults`` records.
        score_thr (float): Predictions below it are ignored.
        iou_thr (float): See :func:`class_duplicates`.

    Returns:
        dict: ``detections`` (predictions scoring at least ``score_thr``),
        ``class_duplicates`` (how many of them are class duplicates) and
        ``one_label`` (how many of them :func:`suppress_class_duplicates`
        keeps: the boxes drawn with one label per object).
    """
    detections = duplicates = one_label = 0
    for record in predictions:
        pred = record['pred_instances']
        # boxes below the threshold rank below every shown box, so leaving
        # them out changes neither count
        _, conflicts = _ranked_conflicts(pred['bboxes'], pred['scores'],
                                         pred['labels'], iou_thr, score_thr)
        detections += len(conflicts)
        duplicates += _count_ranked_duplicates(conflicts)
        one_label += int(_greedy_keep(conflicts).sum())
    return dict(detections=detections, class_duplicates=duplicates,
                one_label=one_label)


def plot_loss_and_ap(losses: Sequence[Tuple[int, float]],
                     ap_curves: Dict[str, Sequence[Tuple[int, float]]],
                     path: str,
                     title: str = 'Training loss and held-out AP50') -> None:
    """Plot the total training loss (left axis) and each AP
    curve (right axis, one marker per validation) against the iteration.

    Args:
        losses (list[tuple]): ``(iteration, loss)`` as logged
            (:func:`vovdet.analysis.learning.logged_losses`); may be empty
            (a run shorter than the logging interval).
        ap_curves (dict): ``{metric name: [(iteration, AP), ...]}``
            (:func:`vovdet.analysis.learning.logged_metrics`); may be
            empty.
        path (str): The PNG to write.
        title (str): The figure's title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    if losses:
        ax.plot(*zip(*losses), color='tab:grey', label='total training loss')
    ax.set_xlabel('iteration')
    ax.set_ylabel('total training loss')
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    handles = ax.get_lines()
    if ap_curves:
        ap_ax = ax.twinx()
        for name, points in ap_curves.items():
            handles += ap_ax.plot(*zip(*points), marker='o', label=name)
        ap_ax.set_ylabel('held-out AP50')
        ap_ax.set_ylim(0, 1)
    ax.legend(handles=handles, labels=[h.get_label() for h in handles],
              fontsize=8, loc='upper right')
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gt_instances(info: Dict, scale: float):
    """mmdet's ``InstanceData`` of a dataset entry's annotations (not
    ignored), read by mmdet's ``LoadAnnotations``, scaled by ``scale``."""
    from mmdet.datasets.transforms import LoadAnnotations
    from mmengine.structures import InstanceData

    gt = LoadAnnotations(with_bbox=True, with_mask=True)(
        dict(info, ori_shape=(info['height'], info['width'])))
    keep = ~gt['gt_ignore_flags']
    return InstanceData(
        bboxes=gt['gt_bboxes'].tensor[keep] * scale,
        labels=torch.as_tensor(gt['gt_bboxes_labels'][keep]),
        masks=gt['gt_masks'][np.flatnonzero(keep)].rescale(scale))


def _pred_instances(pred: Dict, height: int, width: int, score_thr: float,
                    scale: float, one_label_per_object: bool):
    """mmdet's ``InstanceData`` of a dumped prediction: the boxes scoring
    at least ``score_thr`` (less their class duplicates if
    ``one_label_per_object``), their RLE masks decoded, scaled by
    ``scale``."""
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    from pycocotools import mask as mask_util

    keep = torch.as_tensor(pred['scores']) >= score_thr
    if one_label_per_object:
        keep &= suppress_class_duplicates(pred['bboxes'], pred['scores'],
                                          pred['labels'])
    keep = keep.nonzero()[:, 0]
    rles = [pred['masks'][i] for i in keep.tolist()]
    masks = (mask_util.decode(rles).transpose(2, 0, 1) if rles else
             np.zeros((0, height, width), np.uint8))
    return InstanceData(
        bboxes=torch.as_tensor(pred['bboxes'])[keep] * scale,
        scores=torch.as_tensor(pred['scores'])[keep],
        labels=torch.as_tensor(pred['labels'])[keep],
        masks=BitmapMasks(masks, height, width).rescale(scale))


def draw_gt_vs_pred(dataset_cfg: Dict,
                    predictions: Sequence[Dict],
                    path: str,
                    num_images: int = 6,
                    score_thr: float = 0.3,
                    scale: float = 2.,
                    one_label_per_object: bool = True) -> List[str]:
    """Draw ground truth | predictions for the first images of a test set.

    One row per image: on the left its annotated boxes and masks with class
    names, on the right the predictions scoring at least ``score_thr``
    (each object once, by default) with class names and scores (percent),
    both drawn by mmdet's
    ``DetLocalVisualizer.add_datasample`` (which puts ground truth left of
    predictions) in the data set's palette, under a header naming the
    columns.

    Args:
        dataset_cfg (dict): The test dataloader's ``dataset`` config (its
            annotations, images and ``metainfo``).
        predictions (list[dict]): mmdet's ``DumpDetResults`` records of
            that set, in its order.
        path (str): The PNG to write.
        num_images (int): Rows (fewer when the set has fewer images).
        score_thr (float): Predictions below it are not drawn.
        scale (float): Images are enlarged by this factor before drawing:
            mmdet draws its labels and 3 px lines at a size independent of
            the image, which crowds small images such as the demo's 192 px
            ones.
        one_label_per_object (bool): Leave out the class duplicates
            (:func:`suppress_class_duplicates`): each object is drawn once,
            with the model's best guess at its class.

    Returns:
        list[str]: The drawn images, top to bottom.
    """
    import mmcv
    from mmdet.registry import DATASETS
    from mmdet.structures import DetDataSample
    from mmdet.visualization import DetLocalVisualizer

    # only the annotations are read: no pipeline
    dataset = DATASETS.build(dict(dataset_cfg, pipeline=[]))
    infos = {info['img_id']: info for info in
             (dataset.get_data_info(i) for i in range(len(dataset)))}
    visualizer = DetLocalVisualizer(name='vovdet_demo_gt_vs_pred')
    visualizer.dataset_meta = dataset.metainfo
    rows, drawn = [], []
    for record in list(predictions)[:num_images]:
        info = infos[record['img_id']]
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        sample = DetDataSample(
            gt_instances=_gt_instances(info, scale),
            pred_instances=_pred_instances(record['pred_instances'],
                                           *image.shape[:2], score_thr,
                                           scale, one_label_per_object))
        with warnings.catch_warnings():
            # boxes clipped to the image end on its border, which
            # mmengine's visualizer reports as out of bounds
            warnings.filterwarnings('ignore', message='.*out of bounds')
            # the predictions are filtered above (>= score_thr); mmdet
            # keeps scores > pred_score_thr
            visualizer.add_datasample(
                osp.basename(info['img_path']),
                mmcv.imrescale(image, scale), sample, pred_score_thr=0)
        rows.append(visualizer.get_image())
        drawn.append(info['img_path'])
    if not rows:
        raise ValueError(f'no predictions to draw into {path}')
    width = max(row.shape[1] for row in rows)
    header = np.full((24, width, 3), 255, np.uint8)
    visualizer.set_image(header)
    visualizer.draw_texts(
        ['ground truth', f'predictions scoring >= {score_thr}' +
         (', one per object' if one_label_per_object else '')],
        np.array([[width / 4, 12], [3 * width / 4, 12]]), colors='black',
        font_sizes=13, vertical_alignments='center',
        horizontal_alignments='center')
    rows = [visualizer.get_image()] + [
        mmcv.impad(row, shape=(row.shape[0], width), pad_val=255)
        for row in rows
    ]
    mmcv.imwrite(np.concatenate(rows)[..., ::-1], path)
    return drawn
