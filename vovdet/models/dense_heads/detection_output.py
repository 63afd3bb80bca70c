"""Caffe SSD's ``DetectionOutput`` candidate selection, shared by the
RefineDet and DSOD heads.

Caffe's ``DetectionOutputLayer`` (``src/caffe/layers/detection_output_layer
.cpp``, ``ApplyNMSFast`` in ``src/caffe/util/bbox_util.cpp``) keeps, *for each
class*, the boxes scoring above ``confidence_threshold`` and the ``top_k``
best of them (``nms_param.top_k``: 1000 in RefineDet's scripts, 400 in
DSOD300_pascal.py), runs NMS per class, then keeps the ``keep_top_k`` best
over all classes. mmdet's ``filter_scores_and_topk`` takes ``nms_pre`` over
all (anchor, class) pairs instead, which lets one crowded class crowd the
others out before NMS.
"""
from typing import Tuple

import torch
from torch import Tensor


def per_class_topk(scores: Tensor, score_thr: float,
                   top_k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Scores above ``score_thr``, at most ``top_k`` per class.

    Args:
        scores (Tensor): Class probabilities ``(num_priors, num_classes)``,
            background excluded.
        score_thr (float): Keep scores strictly above it.
        top_k (int): Candidates kept per class; ``-1`` (or 0) keeps all.

    Returns:
        tuple[Tensor, Tensor, Tensor]: The kept scores, their class labels
        and prior indices, grouped by class, best first within a class.
    """
    prior_inds, labels = (scores > score_thr).nonzero(as_tuple=True)
    kept = scores[prior_inds, labels]
    order = kept.argsort(descending=True)
    # a stable sort by class keeps the descending scores within each class
    order = order[labels[order].argsort(stable=True)]
    kept, labels, prior_inds = kept[order], labels[order], prior_inds[order]
    if top_k > 0:
        counts = torch.bincount(labels, minlength=scores.size(1))
        starts = counts.cumsum(0) - counts
        rank = torch.arange(len(labels), device=labels.device) - starts[labels]
        within = rank < top_k
        kept, labels, prior_inds = (kept[within], labels[within],
                                    prior_inds[within])
    return kept, labels, prior_inds
