"""Mask R-CNN (and Faster R-CNN) as one ONNX graph: RPN proposals,
multi-level RoIAlign, the box head's decoding and per-class NMS, the mask
head and the masks pasted into the image."""
from typing import Any, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from vovdet.models.dense_heads import flatten_levels

from .base import DetectorExport
from .ops import (ExportError, batched_nms, clip_boxes, dense_post_process,
                  extract_roi_features, image_shape, multiclass_candidates,
                  paste_masks)


def _on_rois(head: nn.Module, extractor: nn.Module, feats: Tuple[Tensor, ...],
             rois: Tensor) -> Any:
    """``head`` on the RoI features of ``rois`` with one zero RoI appended
    and its outputs dropped: with no RoI (no detection above the score
    threshold) a GroupNorm head would reshape an empty batch to ``(0, G,
    -1)``, which ONNX Runtime refuses."""
    out = head(extract_roi_features(extractor, feats,
                                    torch.cat([rois, rois.new_zeros(1, 5)])))
    if isinstance(out, tuple):
        return tuple(o[:-1] for o in out)
    return out[:-1]


class MaskRCNNExport(DetectorExport):
    """mmdet's ``TwoStageDetector.predict`` with an ``RPNHead`` and a
    ``StandardRoIHead``, for one image (see :class:`DetectorExport`); the
    outputs gain ``masks`` ``(n, H, W)`` (bool) when the RoI head has a mask
    head.

    Needs opset 16: ``RoiAlign``'s ``half_pixel`` mode is mmcv's
    ``aligned=True``.
    """
    family = 'Mask R-CNN'
    min_opset = 16

    def __init__(self, detector: nn.Module) -> None:
        super().__init__(detector)
        roi_head = detector.roi_head
        if roi_head.with_shared_head:
            raise ExportError('a shared RoI head (ResNet C4 Mask R-CNN) has '
                              'no ONNX export here; use an FPN config')
        if roi_head.bbox_head.custom_cls_channels:
            raise ExportError(f'{type(roi_head.bbox_head.loss_cls).__name__}'
                              f' (custom classification channels) has no '
                              f'ONNX export; use a softmax CrossEntropyLoss')
        if roi_head.with_mask:
            self.output_names = ('boxes', 'scores', 'labels', 'masks')

    @staticmethod
    def supports(detector: nn.Module) -> bool:
        from mmdet.models.dense_heads import RPNHead
        from mmdet.models.roi_heads import StandardRoIHead
        return (isinstance(getattr(detector, 'rpn_head', None), RPNHead)
                and isinstance(getattr(detector, 'roi_head', None),
                               StandardRoIHead))

    def proposals(self, feats: Tuple[Tensor, ...],
                  shape: Tensor) -> Tensor:
        """``RPNHead.predict``: per level the ``nms_pre`` best anchors,
        decoded and clipped, then NMS within each level and the
        ``max_per_img`` best. Returns ``(n, 4)`` proposals."""
        rpn = self.detector.rpn_head
        cfg = rpn.test_cfg
        cls_scores, bbox_preds = rpn(feats)
        priors = rpn.prior_generator.grid_priors(
            [score.shape[-2:] for score in cls_scores],
            dtype=feats[0].dtype,
            device=feats[0].device)
        mlvl_scores, mlvl_deltas, mlvl_priors, level_ids = [], [], [], []
        nms_pre = cfg.get('nms_pre', -1)
        for level, (score, deltas, anchors) in enumerate(
                zip(cls_scores, bbox_preds, priors)):
            score = flatten_levels([score], rpn.cls_out_channels)[0]
            score = (score.sigmoid() if rpn.use_sigmoid_cls else
                     score.softmax(-1)[:, :-1])[:, 0]
            k = torch.tensor(score.size(0))
            if nms_pre > 0:
                k = k.clamp(max=nms_pre)
            score, inds = score.topk(k)
            mlvl_scores.append(score)
            mlvl_deltas.append(
                flatten_levels([deltas], rpn.bbox_coder.encode_size)[0][inds])
            mlvl_priors.append(anchors[inds])
            level_ids.append(torch.full_like(inds, level))
        boxes = clip_boxes(
            rpn.bbox_coder.decode(torch.cat(mlvl_priors),
                                  torch.cat(mlvl_deltas)), shape)
        boxes, _, _ = dense_post_process(boxes, torch.cat(mlvl_scores),
                                         torch.cat(level_ids), cfg)
        return boxes

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        """Boxes ``(n, 4)``, scores ``(n, )``, labels ``(n, )`` and, with a
        mask head, masks ``(n, H, W)``."""
        roi_head = self.detector.roi_head
        bbox_head = roi_head.bbox_head
        cfg = roi_head.test_cfg
        shape = image_shape(image)
        feats = self.detector.extract_feat(image)
        proposals = self.proposals(feats, shape)

        # StandardRoIHead.predict_bbox + BBoxHead._predict_by_feat_single
        rois = torch.cat([proposals.new_zeros(proposals.size(0), 1),
                          proposals], 1)
        cls_score, bbox_pred = _on_rois(bbox_head,
                                        roi_head.bbox_roi_extractor, feats,
                                        rois)
        scores = cls_score.softmax(-1)
        num_classes = 1 if bbox_head.reg_class_agnostic else \
            bbox_head.num_classes
        boxes = bbox_head.bbox_coder.decode(
            proposals[:, None].expand(-1, num_classes, 4).reshape(-1, 4),
            bbox_pred.reshape(-1, bbox_head.bbox_coder.encode_size))
        boxes, scores, labels = multiclass_candidates(
            clip_boxes(boxes, shape).reshape(proposals.size(0), -1), scores,
            cfg.score_thr)
        keep = batched_nms(boxes, scores, labels, cfg.nms, cfg.max_per_img)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if not roi_head.with_mask:
            return boxes, scores, labels

        # StandardRoIHead.predict_mask + FCNMaskHead._predict_by_feat_single
        rois = torch.cat([boxes.new_zeros(boxes.size(0), 1), boxes], 1)
        mask_probs = _on_rois(roi_head.mask_head,
                              roi_head.mask_roi_extractor, feats,
                              rois).sigmoid()
        if roi_head.mask_head.class_agnostic:
            mask_probs = mask_probs[:, 0]
        else:
            mask_probs = mask_probs[torch.arange(labels.size(0)), labels]
        masks = paste_masks(mask_probs, boxes, torch.tensor(image.size(2)),
                            torch.tensor(image.size(3)))
        return boxes, scores, labels, masks >= cfg.mask_thr_binary
