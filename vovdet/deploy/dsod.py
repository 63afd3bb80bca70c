"""DSOD as one ONNX graph: per-class top-k over every scale's priors,
decoding and per-class NMS."""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from vovdet.models.dense_heads import (DSODHead, decode_candidates,
                                       flatten_levels)

from .base import DetectorExport
from .ops import clip_boxes, dense_post_process, image_shape


class DSODExport(DetectorExport):
    """``SingleStageDetector.predict`` with a :class:`DSODHead`, for one
    image (see :class:`DetectorExport`): the head's ``DetectionOutput``
    (:func:`decode_candidates` on the softmax scores of all scales), then
    mmdet's dense post-processing (:func:`dense_post_process`).
    """
    family = 'DSOD'

    @staticmethod
    def supports(detector: nn.Module) -> bool:
        return isinstance(getattr(detector, 'bbox_head', None), DSODHead)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Boxes ``(n, 4)``, scores ``(n, )`` and labels ``(n, )``."""
        head = self.detector.bbox_head
        cfg = head.test_cfg
        cls_scores, bbox_preds = head(self.detector.extract_feat(image))
        priors = head.prior_generator.grid_priors(
            [score.shape[-2:] for score in cls_scores],
            dtype=image.dtype,
            device=image.device)
        boxes, scores, labels = decode_candidates(
            flatten_levels(cls_scores,
                           head.cls_out_channels)[0].softmax(-1)[:, :-1],
            torch.cat(priors),
            flatten_levels(bbox_preds, 4)[0], head.bbox_coder,
            cfg.get('score_thr', 0), cfg.get('nms_pre', -1))
        boxes = clip_boxes(boxes, image_shape(image))
        return dense_post_process(boxes, scores, labels, cfg)
