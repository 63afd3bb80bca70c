"""RefineDet as one ONNX graph: ARM anchor refinement and negative anchor
filtering, the ODM's per-class top-k, decoding and per-class NMS."""
from typing import Tuple

import torch.nn as nn
from torch import Tensor

from vovdet.models.dense_heads import RefineDetHead

from .base import DetectorExport
from .ops import clip_boxes, dense_post_process, image_shape


class RefineDetExport(DetectorExport):
    """``RefineDet.predict`` for one image (see :class:`DetectorExport`).

    The ARM refines the anchors and drops those it is sure are background,
    the ODM scores the rest: the head's own
    :meth:`~vovdet.models.dense_heads.RefineDetHead.detection_candidates`,
    then mmdet's dense post-processing (:func:`dense_post_process`).
    """
    family = 'RefineDet'

    @staticmethod
    def supports(detector: nn.Module) -> bool:
        return isinstance(getattr(detector, 'bbox_head', None), RefineDetHead)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Boxes ``(n, 4)``, scores ``(n, )`` and labels ``(n, )``."""
        head = self.detector.bbox_head
        outs = head(self.detector.extract_feat(image))
        boxes, scores, labels = head.detection_candidates(
            *outs, head.test_cfg, max_shapes=[None])[0]
        boxes = clip_boxes(boxes, image_shape(image))
        return dense_post_process(boxes, scores, labels, head.test_cfg)
