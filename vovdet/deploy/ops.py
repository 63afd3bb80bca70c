"""Traceable post-processing for the ONNX export of whole detectors.

mmdet's predict paths branch in Python on data (``if not valid.all()``,
``if boxes.numel() > 0``, ``if boxes.shape[0] < split_thr``), which a trace
freezes to the branch taken on the example input, and mmcv 2.1's ``nms``
has no ONNX symbolic (its ``roi_align`` symbolic writes opset-10 ``Squeeze``
attributes and the legacy RoiAlign pixel mode). The functions here compute
what those paths compute, branch-free:

* :class:`NonMaxSuppression` and :class:`RoiAlign` run mmcv's kernels in
  PyTorch and export as ONNX ``NonMaxSuppression`` and ``RoiAlign``
  (opset 16, ``half_pixel`` = mmcv's ``aligned=True``);
* :func:`batched_nms` is mmcv's class-offset ``batched_nms``;
* :func:`dense_post_process` is mmdet's ``BaseDenseHead._bbox_post_process``
  (small boxes dropped, NMS, ``max_per_img``);
* :func:`multiclass_candidates` is the candidate half of mmdet's
  ``multiclass_nms``;
* :func:`extract_roi_features` is ``SingleRoIExtractor.forward``;
* :func:`paste_masks` is ``FCNMaskHead``'s ``_do_paste_mask``.

Sizes are kept as tensors (``torch.tensor(x.size(i))``), so an export with
dynamic axes takes them from its input.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

# NonMaxSuppression needs a number for "no limit"
NO_LIMIT = 2**31 - 1


class ExportError(ValueError):
    """A model or setting the ONNX export does not support."""


class NonMaxSuppression(torch.autograd.Function):
    """Greedy NMS of one set of boxes: mmcv's ``nms`` in PyTorch, ONNX's
    ``NonMaxSuppression`` (one batch, one class) in an export.

    Both suppress a box whose IoU with a kept, higher-scoring box is
    strictly above the threshold, and return the kept indices best first.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_output: int,
                iou_threshold: float) -> Tensor:
        from mmcv.ops import nms
        _, keep = nms(boxes, scores, iou_threshold)
        return keep[:max_output]

    @staticmethod
    def symbolic(g, boxes, scores, max_output: int, iou_threshold: float):
        axis0 = g.op('Constant', value_t=torch.tensor([0]))
        selected = g.op(
            'NonMaxSuppression',
            g.op('Unsqueeze', boxes, axis0),
            g.op('Unsqueeze', g.op('Unsqueeze', scores, axis0), axis0),
            g.op('Constant', value_t=torch.tensor([max_output])),
            g.op('Constant', value_t=torch.tensor([iou_threshold])))
        # rows are (batch, class, box)
        return g.op(
            'Gather', selected, g.op('Constant', value_t=torch.tensor(2)),
            axis_i=1)


class RoiAlign(torch.autograd.Function):
    """mmcv's ``roi_align`` (average pooling) in PyTorch, ONNX's
    ``RoiAlign`` (opset 16) in an export.

    ``aligned=True`` shifts the box by half a pixel (mmcv, Detectron2),
    which is ONNX's ``coordinate_transformation_mode='half_pixel'``;
    ``aligned=False`` is ``'output_half_pixel'`` (boxes at least 1 px).
    """

    @staticmethod
    def forward(ctx, feats: Tensor, rois: Tensor, output_size: Tuple[int,
                                                                     int],
                spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> Tensor:
        from mmcv.ops import roi_align
        return roi_align(feats, rois, output_size, spatial_scale,
                         sampling_ratio, 'avg', aligned)

    @staticmethod
    def symbolic(g, feats, rois, output_size, spatial_scale, sampling_ratio,
                 aligned):
        batch_inds = g.op(
            'Cast',
            g.op('Gather', rois, g.op('Constant', value_t=torch.tensor(0)),
                 axis_i=1),
            to_i=torch.onnx.TensorProtoDataType.INT64)
        boxes = g.op('Gather', rois,
                     g.op('Constant', value_t=torch.tensor([1, 2, 3, 4])),
                     axis_i=1)
        return g.op(
            'RoiAlign',
            feats,
            boxes,
            batch_inds,
            coordinate_transformation_mode_s='half_pixel'
            if aligned else 'output_half_pixel',
            mode_s='avg',
            output_height_i=output_size[0],
            output_width_i=output_size[1],
            sampling_ratio_i=max(0, sampling_ratio),
            spatial_scale_f=spatial_scale)


def image_shape(image: Tensor) -> Tensor:
    """``(H, W)`` of an ``(N, C, H, W)`` batch as a float tensor."""
    return torch.stack([
        torch.tensor(image.size(2)),
        torch.tensor(image.size(3))
    ]).to(image.dtype)


def clip_boxes(boxes: Tensor, shape: Tensor) -> Tensor:
    """Clip ``(..., 4k)`` boxes to ``[0, W] x [0, H]`` (``shape`` = ``(H,
    W)`` tensor), as mmdet's coders do with ``max_shape``."""
    size = boxes.size()
    boxes = boxes.reshape(-1, 4)
    max_xy = shape.flip(0).repeat(2)
    return torch.minimum(boxes.clamp(min=0), max_xy).reshape(size)


def _nms_settings(nms_cfg: dict) -> Tuple[float, bool]:
    """``(iou_threshold, class_agnostic)`` of an mmcv NMS config."""
    cfg = dict(nms_cfg)
    kind = cfg.pop('type', 'nms')
    if kind != 'nms':
        raise ExportError(
            f"test_cfg nms type '{kind}' has no ONNX export; only "
            f"type='nms' (greedy NMS) exports as NonMaxSuppression")
    if cfg.pop('offset', 0) != 0:
        raise ExportError('test_cfg nms offset=1 (legacy +1 box sizes) has no '
                          'ONNX NonMaxSuppression equivalent; use offset=0')
    iou_threshold = float(cfg.pop('iou_threshold'))
    class_agnostic = bool(cfg.pop('class_agnostic', False))
    cfg.pop('split_thr', None)  # a speed switch: the result is the same
    if cfg:
        raise ExportError(f'test_cfg nms keys {sorted(cfg)} have no ONNX '
                          f'export; drop them')
    return iou_threshold, class_agnostic


def batched_nms(boxes: Tensor,
                scores: Tensor,
                idxs: Tensor,
                nms_cfg: dict,
                max_num: int = -1) -> Tensor:
    """NMS within each group of ``idxs`` (class or level), as mmcv's
    ``batched_nms``: boxes of group ``i`` are shifted by ``i * (max
    coordinate + 1)`` so that groups never overlap, then one NMS runs.

    Args:
        boxes (Tensor): ``(n, 4)`` boxes with coordinates >= 0 (clipped).
        scores (Tensor): ``(n, )``.
        idxs (Tensor): ``(n, )`` group of each box.
        nms_cfg (dict): mmcv's NMS config (``type='nms'``,
            ``iou_threshold``, optionally ``class_agnostic``).
        max_num (int): Keep at most this many; -1 keeps all.

    Returns:
        Tensor: Indices of the kept boxes, best first.
    """
    iou_threshold, class_agnostic = _nms_settings(nms_cfg)
    if class_agnostic:
        boxes_for_nms = boxes
    else:
        # mmcv takes boxes.max(); the 0 appended keeps an empty set defined
        # and changes nothing for clipped (non-negative) boxes
        max_coordinate = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
        offsets = idxs.to(boxes) * (max_coordinate + 1)
        boxes_for_nms = boxes + offsets[:, None]
    return NonMaxSuppression.apply(boxes_for_nms, scores,
                                   max_num if max_num > 0 else NO_LIMIT,
                                   iou_threshold)


def dense_post_process(boxes: Tensor, scores: Tensor, labels: Tensor,
                       cfg: dict) -> Tuple[Tensor, Tensor, Tensor]:
    """mmdet's ``BaseDenseHead._bbox_post_process`` without rescaling:
    boxes not wider and taller than ``min_bbox_size`` dropped, per-class NMS,
    the ``max_per_img`` best kept.

    Args:
        boxes (Tensor): ``(n, 4)`` clipped boxes.
        scores (Tensor): ``(n, )``.
        labels (Tensor): ``(n, )`` classes (or RPN levels).
        cfg (dict): The head's test config (``nms``, ``max_per_img``,
            ``min_bbox_size``).

    Returns:
        tuple[Tensor, Tensor, Tensor]: Boxes, scores and labels, best first.
    """
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = ((wh[:, 0] > min_size) & (wh[:, 1] > min_size)).nonzero()[:, 0]
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    keep = batched_nms(boxes, scores, labels, cfg['nms'],
                       cfg.get('max_per_img', -1))
    return boxes[keep], scores[keep], labels[keep]


def multiclass_candidates(boxes: Tensor, scores: Tensor, score_thr: float
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """The (box, class) pairs of mmdet's ``multiclass_nms`` before its NMS.

    Args:
        boxes (Tensor): ``(n, 4 * num_classes)`` class-specific or ``(n,
            4)`` shared boxes.
        scores (Tensor): ``(n, num_classes + 1)`` softmax scores,
            background last.
        score_thr (float): Keep scores strictly above it.

    Returns:
        tuple[Tensor, Tensor, Tensor]: Boxes ``(m, 4)``, scores, labels.
    """
    num_classes = scores.size(1) - 1
    boxes = boxes.reshape(scores.size(0), -1, 4).expand(
        -1, num_classes, 4).reshape(-1, 4)
    scores = scores[:, :-1]
    labels = torch.arange(num_classes, device=scores.device).view(
        1, -1).expand_as(scores).reshape(-1)
    scores = scores.reshape(-1)
    valid = (scores > score_thr).nonzero()[:, 0]
    return boxes[valid], scores[valid], labels[valid]


def roi_align(layer: nn.Module, feats: Tensor, rois: Tensor) -> Tensor:
    """One of an extractor's mmcv ``RoIAlign`` layers through
    :class:`RoiAlign`."""
    pool_mode = getattr(layer, 'pool_mode', 'avg')
    use_torchvision = getattr(layer, 'use_torchvision', False)
    if pool_mode != 'avg' or use_torchvision:
        raise ExportError(
            f'{type(layer).__name__}(pool_mode={pool_mode!r}, '
            f'use_torchvision={use_torchvision}) has no ONNX export; '
            f"use mmcv's RoIAlign with pool_mode='avg'")
    return RoiAlign.apply(feats, rois, tuple(layer.output_size),
                          float(layer.spatial_scale),
                          int(layer.sampling_ratio), bool(layer.aligned))


def extract_roi_features(extractor: nn.Module, feats: Sequence[Tensor],
                         rois: Tensor) -> Tensor:
    """mmdet's ``SingleRoIExtractor.forward``: each RoI pooled from the FPN
    level its size maps to (``map_roi_levels``).

    One zero RoI per level is appended and its result dropped, so no level
    runs ``RoiAlign`` on an empty set.

    Args:
        extractor (nn.Module): A ``SingleRoIExtractor``.
        feats (Sequence[Tensor]): The feature levels.
        rois (Tensor): ``(n, 5)`` RoIs ``(batch index, x1, y1, x2, y2)``.

    Returns:
        Tensor: ``(n, C, h, w)`` RoI features.
    """
    if type(extractor).__name__ != 'SingleRoIExtractor':
        raise ExportError(f'{type(extractor).__name__} has no ONNX export; '
                          f'use SingleRoIExtractor')
    feats = feats[:extractor.num_inputs]
    num_levels = len(feats)
    if num_levels == 1:
        return roi_align(extractor.roi_layers[0], feats[0], rois)
    levels = torch.cat([
        extractor.map_roi_levels(rois, num_levels),
        torch.arange(num_levels, device=rois.device)
    ])
    rois = torch.cat([rois, rois.new_zeros(num_levels, 5)])
    parts, order = [], []
    for i in range(num_levels):
        inds = (levels == i).nonzero()[:, 0]
        parts.append(roi_align(extractor.roi_layers[i], feats[i], rois[inds]))
        order.append(inds)
    # back to RoI order by a gather: an indexed assignment would be traced
    # with the per-level RoI count of the example image when that is 1
    roi_feats = torch.cat(parts)[torch.cat(order).argsort()]
    return roi_feats[:-num_levels]


def _bilinear_weights(lo: Tensor, hi: Tensor, length: Tensor,
                      mask_size: int) -> Tensor:
    """Weights ``(n, length, mask_size)`` that sample a ``mask_size`` row
    of a mask spread over ``[lo, hi]`` at the pixel centres ``0.5, 1.5,
    ...``: ``grid_sample``'s bilinear tent, zero outside the mask."""
    centres = torch.arange(length, device=lo.device).to(lo.dtype) + 0.5
    grid = (centres - lo) / (hi - lo) * 2 - 1
    # grid_sample's un-normalisation (align_corners=False)
    pos = ((grid + 1) * mask_size - 1) / 2
    taps = torch.arange(mask_size, device=lo.device).to(lo.dtype)
    return (1 - (pos[..., None] - taps).abs()).clamp(min=0)


def paste_masks(masks: Tensor, boxes: Tensor, img_h: Tensor,
                img_w: Tensor) -> Tensor:
    """Paste ``(n, M, M)`` mask probabilities into ``(n, H, W)`` images at
    their boxes.

    mmdet's ``_do_paste_mask`` bilinearly samples each mask with
    ``grid_sample`` on the box's pixel grid. That grid is a product of a
    row and a column grid, so the sampling separates: ``out = Wy @ mask @
    Wx^T`` with the 1-D tent weights of :func:`_bilinear_weights`. This is
    the same interpolation without the ``(n, H, W, 2)`` grid, whose size at
    800x1333 with 100 detections would be 850 MB. mmdet samples only the
    box's pixels plus one on CPU; the pixels beyond weigh a mask edge by
    less than 0.5, so thresholded at 0.5 they are background in both.
    (Degenerate zero-width boxes differ: mmdet samples the mask's centre
    column there, this gives an empty mask.)

    Args:
        masks (Tensor): ``(n, M, M)`` probabilities.
        boxes (Tensor): ``(n, 4)`` boxes in image pixels.
        img_h, img_w (Tensor): The image size.

    Returns:
        Tensor: ``(n, H, W)`` probabilities.
    """
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    weights_y = _bilinear_weights(y0, y1, img_h, masks.size(1))
    weights_x = _bilinear_weights(x0, x1, img_w, masks.size(2))
    return weights_y @ masks @ weights_x.transpose(1, 2)

