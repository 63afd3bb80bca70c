"""Caffe SSD's ``DetectionOutput`` candidate selection, shared by the
RefineDet and DSOD heads and by their ONNX export (:mod:`vovdet.deploy`).

Caffe's ``DetectionOutputLayer`` (``src/caffe/layers/detection_output_layer
.cpp``, ``ApplyNMSFast`` in ``src/caffe/util/bbox_util.cpp``) keeps, *for each
class*, the boxes scoring above ``confidence_threshold`` and the ``top_k``
best of them (``nms_param.top_k``: 1000 in RefineDet's scripts, 400 in
DSOD300_pascal.py), runs NMS per class, then keeps the ``keep_top_k`` best
over all classes. mmdet's ``filter_scores_and_topk`` takes ``nms_pre`` over
all (anchor, class) pairs instead, which lets one crowded class crowd the
others out before NMS.

Every function here is traceable (no data-dependent Python branch, sizes
kept as tensors), so the exported graph runs the very code the heads run.
"""
from typing import List, Optional, Sequence, Tuple, Union

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
    # a tensor, not an int: an exported graph takes the prior count of its
    # input instead of freezing the one it was traced with
    k = torch.tensor(scores.size(0))
    if top_k > 0:
        k = k.clamp(max=top_k)
    top_scores, prior_inds = scores.t().topk(k, dim=1)
    labels = torch.arange(
        scores.size(1), device=scores.device)[:, None].expand_as(prior_inds)
    kept = top_scores > score_thr
    return top_scores[kept], labels[kept], prior_inds[kept]


def flatten_levels(maps: List[Tensor], channels: int) -> Tensor:
    """``(B, A*K, H, W)`` per level -> ``(B, sum(H*W*A), K)``.

    The prior order (level, y, x, anchor) is mmdet's prior generators'.
    """
    return torch.cat([
        m.permute(0, 2, 3, 1).reshape(m.size(0), -1, channels) for m in maps
    ], 1)


def decode_candidates(
    scores: Tensor,
    priors: Tensor,
    deltas: Tensor,
    bbox_coder,
    score_thr: float,
    top_k: int,
    max_shape: Optional[Union[Sequence[int], Tensor]] = None
) -> Tuple[Tensor, Tensor, Tensor]:
    """``DetectionOutput`` before NMS: the per-class top-k candidates
    (:func:`per_class_topk`), decoded from their priors.

    Args:
        scores (Tensor): Class probabilities ``(num_priors, num_classes)``,
            background excluded.
        priors (Tensor): Priors (anchors, or RefineDet's refined anchors)
            ``(num_priors, 4)``.
        deltas (Tensor): Box offsets ``(num_priors, 4)``.
        bbox_coder: The head's box coder.
        score_thr (float): Keep scores strictly above it.
        top_k (int): Candidates kept per class; ``-1`` keeps all.
        max_shape (tuple[int] or Tensor, optional): Clip the boxes to this
            ``(H, W)``; None leaves them unclipped (the export clips them
            with its input's shape).

    Returns:
        tuple[Tensor, Tensor, Tensor]: Boxes ``(n, 4)``, scores and labels.
    """
    scores, labels, inds = per_class_topk(scores, score_thr, top_k)
    bboxes = bbox_coder.decode(priors[inds], deltas[inds], max_shape=max_shape)
    return bboxes, scores, labels
