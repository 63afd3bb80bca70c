"""RefineDet's two-step head: anchor refinement (ARM) + object detection (ODM).

Reference:
    Zhang et al., "Single-Shot Refinement Neural Network for Object
    Detection", CVPR 2018 (Sec. 3.1-3.3); official Caffe code and the
    VoVNet-RefineDet fork (``paper_specs.md`` §3, §2b).

The ARM predicts, per anchor, a binary object/background score and box
offsets that refine the hand-set anchor. The ODM predicts class scores and
box offsets relative to the *refined* anchor (two-step cascaded regression).
Refined anchors the ARM is sure are background (background probability
above ``neg_anchor_filter_thr`` = 0.99) are left out of the ODM's negatives
in training and out of its detections at test time (negative anchor
filtering). Both modules use SSD's MultiBox loss: softmax cross-entropy
with hard negative mining (3 negatives per positive) + smooth L1, normalised
by the number of positives.

Anchors, assigners, the sampler, the box coder, the losses and the NMS are
mmdet's.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                         OptInstanceList)
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from ..layers.res_bottleneck import res_bottleneck
from .detection_output import decode_candidates, flatten_levels


def hard_negative_mining(cls_losses: Tensor, pos_mask: Tensor,
                         neg_mask: Tensor, neg_pos_ratio: float) -> Tensor:
    """Keep, per image, the negatives with the largest classification loss.

    SSD's ``MAX_NEGATIVE`` mining: image ``i`` keeps
    ``min(floor(neg_pos_ratio * num_pos_i), num_neg_i)`` negatives.

    Args:
        cls_losses (Tensor): Per-anchor classification loss, shape (B, N).
        pos_mask (Tensor): Positive anchors, bool (B, N).
        neg_mask (Tensor): Candidate negative anchors, bool (B, N).
        neg_pos_ratio (float): Negatives kept per positive.

    Returns:
        Tensor: The selected negatives, bool (B, N), a subset of
        ``neg_mask``.
    """
    num_neg = (pos_mask.sum(1).float() * neg_pos_ratio).floor().long()
    num_neg = torch.minimum(num_neg, neg_mask.sum(1))
    # losses are >= 0, so non-candidates filled with -1 rank last
    ranked = cls_losses.detach().masked_fill(~neg_mask, -1.)
    rank = ranked.argsort(dim=1, descending=True).argsort(dim=1)
    return neg_mask & (rank < num_neg[:, None])


@MODELS.register_module()
class RefineDetHead(BaseDenseHead):
    """RefineDet head: ARM on the source maps, ODM on the TCB maps.

    Per level ``l`` and module: an optional "inter" block (VoVNet-RefineDet's
    ``inter_layer_depth=[1, 1, 1, 1]``: a ResNet bottleneck
    ``inter_channels``-``inter_channels``-``4*inter_channels`` with a
    projection shortcut), then two 3x3 convs with bias predicting, for the
    ``A`` anchors of the location, ``4*A`` box offsets and ``2*A``
    object/background logits (ARM) or ``(num_classes+1)*A`` class logits,
    background last (ODM).

    Input is the neck's flat tuple: ``num_levels`` source maps with
    ``in_channels`` channels (ARM), then ``num_levels`` TCB maps with
    ``feat_channels`` channels (ODM). Anchors: one size per level, 4x the
    stride (32/64/128/256 at strides 8/16/32/64), aspect ratios 1/2, 1, 2,
    centred in their cell: 6,375 anchors at 320x320, 16,320 at 512x512.

    Args:
        num_classes (int): Object classes (background excluded).
            Defaults to 80.
        in_channels (Sequence[int]): Channels of the ARM source maps.
            Defaults to (512, 768, 1024, 512) (VoVNet + extra level).
        feat_channels (int or Sequence[int]): Channels of the TCB maps, one
            int for every level or one per level (the source maps' channels
            when the neck's ``transfer_connection`` is off). Defaults to 256.
        inter_channels (int, optional): Width of the inter bottlenecks
            (output ``4 * inter_channels``); None predicts directly from the
            maps. Defaults to 256.
        conv_cfg (dict, optional): Conv config of the inter blocks.
        norm_cfg (dict): Norm config of the inter blocks. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        pred_norm_cfg (dict, optional): Norm after each 3x3 prediction conv
            (which then has no bias), as ScratchDet's ``SSDBNHead`` for
            training from scratch; None gives Caffe RefineDet's plain convs
            with bias (``CreateRefineDetHead(use_batchnorm=False)``).
            Defaults to None.
        anchor_generator (dict): mmdet prior generator config.
        bbox_coder (dict): Box coder; SSD's variances (0.1, 0.1, 0.2, 0.2).
        loss_cls (dict): Softmax classification loss, evaluated per anchor
            (``reduction_override='none'``) for the mining.
        loss_bbox (dict): Box regression loss on the positives.
        neg_anchor_filter_thr (float): Refined anchors whose ARM background
            probability is above it are ignored by the ODM. Defaults to 0.99
            (the official ``objectness_score: 0.01``).
        cascade (bool): Two-step cascaded regression: the ODM matches and
            decodes from the ARM-refined anchors. False is the ablation of
            the paper's Table 3 ("two-step cascaded regression" off): the
            ODM uses the original anchors, while the ARM still trains and
            filters negatives. Defaults to True.
        arm_loss_weight (float): Weight of the ARM's two loss terms against
            the ODM's. The RefineDet paper's Eq. (2) and the Caffe
            ``MultiBoxLoss`` layers weigh them equally: 1.0, the default.
            0 is an ablation (the ARM is not trained: no gradient from it
            reaches the backbone); use it with ``cascade=False`` and
            ``neg_anchor_filter_thr=1.0`` so an untrained ARM neither moves
            nor filters the ODM's anchors.
        train_cfg (dict, optional): ``arm_assigner`` (IoU 0.5/0.5 in
            VoVNet-RefineDet's COCO scripts, 0.7/0.3 in its VOC ones),
            ``odm_assigner`` (0.5/0.5), ``sampler`` (mmdet
            ``PseudoSampler``) and ``neg_pos_ratio`` (3).
        test_cfg (dict, optional): ``nms_pre`` (candidates kept *per
            class* before NMS, Caffe's ``top_k``), ``score_thr``, ``nms``,
            ``min_bbox_size``, ``max_per_img`` (Caffe's ``keep_top_k``).
        init_cfg (dict or list[dict]): Initialization config. Defaults to
            Xavier (uniform), as the Caffe models.
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_channels: Sequence[int] = (512, 768, 1024, 512),
        feat_channels: Union[int, Sequence[int]] = 256,
        inter_channels: Optional[int] = 256,
        conv_cfg: OptConfigType = None,
        norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
        pred_norm_cfg: OptConfigType = None,
        anchor_generator: ConfigType = dict(
            type='AnchorGenerator',
            strides=[8, 16, 32, 64],
            ratios=[0.5, 1.0, 2.0],
            scales=[4],
            center_offset=0.5),
        bbox_coder: ConfigType = dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls: ConfigType = dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox: ConfigType = dict(
            type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
        neg_anchor_filter_thr: float = 0.99,
        cascade: bool = True,
        arm_loss_weight: float = 1.0,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        init_cfg: MultiConfig = dict(
            type='Xavier', layer='Conv2d', distribution='uniform', bias=0)
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = tuple(in_channels)
        self.prior_generator = TASK_UTILS.build(anchor_generator)
        self.num_levels = self.prior_generator.num_levels
        if len(in_channels) != self.num_levels:
            raise ValueError(
                f'RefineDetHead got {len(in_channels)} in_channels but the '
                f'anchor generator has {self.num_levels} levels; give one '
                f'channel count per level')
        if loss_cls.get('use_sigmoid', False):
            raise ValueError('RefineDetHead needs a softmax loss_cls (the '
                             'ARM/ODM scores have a background column); set '
                             'use_sigmoid=False')
        if not 0. < neg_anchor_filter_thr <= 1.:
            raise ValueError(f'neg_anchor_filter_thr must be in (0, 1], got '
                             f'{neg_anchor_filter_thr}')
        feat_channels = ((feat_channels, ) * self.num_levels if isinstance(
            feat_channels, int) else tuple(feat_channels))
        if len(feat_channels) != self.num_levels:
            raise ValueError(
                f'RefineDetHead got {len(feat_channels)} feat_channels but '
                f'the anchor generator has {self.num_levels} levels; give one '
                f'int or one channel count per level')
        self.num_classes = num_classes
        self.cls_out_channels = num_classes + 1
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.inter_channels = inter_channels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.pred_norm_cfg = pred_norm_cfg
        self.neg_anchor_filter_thr = neg_anchor_filter_thr
        self.cascade = cascade
        if arm_loss_weight < 0:
            raise ValueError(f'arm_loss_weight must be >= 0, got '
                             f'{arm_loss_weight}')
        self.arm_loss_weight = arm_loss_weight
        self.num_base_priors = self.prior_generator.num_base_priors
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if train_cfg:
            self.arm_assigner = TASK_UTILS.build(train_cfg['arm_assigner'])
            self.odm_assigner = TASK_UTILS.build(train_cfg['odm_assigner'])
            self.sampler = TASK_UTILS.build(
                train_cfg.get('sampler', dict(type='PseudoSampler')),
                default_args=dict(context=self))
        self._init_layers()

    def _inter_block(self, channels: int) -> Tuple[nn.Module, int]:
        """The per-head inter block and its output channels."""
        if self.inter_channels is None:
            return nn.Identity(), channels
        block = res_bottleneck(
            channels,
            self.inter_channels,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg)
        return block, block.planes * block.expansion

    def _pred_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        """A 3x3 prediction conv, followed by ``pred_norm_cfg`` if set."""
        if self.pred_norm_cfg is None:
            return nn.Conv2d(in_channels, out_channels, 3, padding=1)
        return ConvModule(
            in_channels,
            out_channels,
            3,
            padding=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.pred_norm_cfg,
            act_cfg=None)

    def _init_layers(self) -> None:
        """Build the inter blocks and the 3x3 prediction convs."""
        self.arm_inter_blocks = nn.ModuleList()
        self.arm_cls_convs = nn.ModuleList()
        self.arm_reg_convs = nn.ModuleList()
        self.odm_inter_blocks = nn.ModuleList()
        self.odm_cls_convs = nn.ModuleList()
        self.odm_reg_convs = nn.ModuleList()
        for channels, odm_channels, num_anchors in zip(
                self.in_channels, self.feat_channels, self.num_base_priors):
            for prefix, in_ch, cls_out in (('arm', channels, 2),
                                           ('odm', odm_channels,
                                            self.cls_out_channels)):
                block, out = self._inter_block(in_ch)
                getattr(self, f'{prefix}_inter_blocks').append(block)
                getattr(self, f'{prefix}_cls_convs').append(
                    self._pred_conv(out, num_anchors * cls_out))
                getattr(self, f'{prefix}_reg_convs').append(
                    self._pred_conv(out, num_anchors * 4))

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], ...]:
        """Run the ARM on the source maps and the ODM on the TCB maps.

        Args:
            x (tuple[Tensor]): ``num_levels`` source maps, then
                ``num_levels`` TCB maps (the ``RefineDetTCB`` output).

        Returns:
            tuple[list[Tensor]]: Per level: ARM logits ``(N, 2*A, H, W)``
            (object, background), ARM offsets ``(N, 4*A, H, W)``, ODM logits
            ``(N, (num_classes+1)*A, H, W)`` (background last) and ODM
            offsets ``(N, 4*A, H, W)``.
        """
        if len(x) != 2 * self.num_levels:
            raise ValueError(
                f'RefineDetHead expects {self.num_levels} source maps and '
                f'{self.num_levels} TCB maps, got {len(x)} maps; use the '
                f'RefineDetTCB neck')
        sources, tcbs = x[:self.num_levels], x[self.num_levels:]
        outs = ([], [], [], [])
        for level in range(self.num_levels):
            arm = self.arm_inter_blocks[level](sources[level])
            odm = self.odm_inter_blocks[level](tcbs[level])
            outs[0].append(self.arm_cls_convs[level](arm))
            outs[1].append(self.arm_reg_convs[level](arm))
            outs[2].append(self.odm_cls_convs[level](odm))
            outs[3].append(self.odm_reg_convs[level](odm))
        return outs

    def _anchors(self, maps: List[Tensor]) -> Tensor:
        """All anchors of the levels, ``(num_anchors, 4)``."""
        return torch.cat(
            self.prior_generator.grid_priors(
                [m.shape[-2:] for m in maps],
                dtype=maps[0].dtype,
                device=maps[0].device))

    def refine_anchors(self, anchors: Tensor, arm_cls: Tensor,
                       arm_deltas: Tensor) -> Tuple[Tensor, Tensor]:
        """Apply the ARM: refined anchors and the negative-filtering mask.

        Args:
            anchors (Tensor): Anchors ``(N, 4)``, shared by the images.
            arm_cls (Tensor): ARM logits ``(B, N, 2)`` (object, background).
            arm_deltas (Tensor): ARM offsets ``(B, N, 4)``.

        Returns:
            tuple[Tensor, Tensor]: Refined anchors ``(B, N, 4)`` (detached:
            the ODM's targets do not back-propagate into the ARM; the
            original anchors when ``cascade`` is False) and a bool
            ``(B, N)`` mask of the anchors the ODM keeps (background
            probability <= ``neg_anchor_filter_thr``).
        """
        num_imgs, num_anchors = arm_deltas.shape[:2]
        bg_prob = arm_cls.detach().softmax(-1)[..., 1]
        keep = bg_prob <= self.neg_anchor_filter_thr
        if not self.cascade:
            return anchors.expand(num_imgs, -1, -1), keep
        refined = self.bbox_coder.decode(
            anchors.repeat(num_imgs, 1),
            arm_deltas.detach().reshape(-1, 4)).reshape(
                num_imgs, num_anchors, 4)
        return refined, keep

    def get_targets(self,
                    priors: Tensor,
                    assigner,
                    batch_gt_instances: InstanceList,
                    batch_gt_instances_ignore: OptInstanceList,
                    class_agnostic: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """Match priors to ground truth, image by image.

        Args:
            priors (Tensor): Priors per image, ``(B, N, 4)``.
            assigner: An mmdet assigner (``MaxIoUAssigner``).
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels``.
            batch_gt_instances_ignore (list[InstanceData], optional):
                Boxes the assigner ignores.
            class_agnostic (bool): ARM targets: label 0 = object and 1 =
                background; else the ground-truth class and ``num_classes``.

        Returns:
            tuple[Tensor, Tensor, Tensor]: Labels ``(B, N)`` (background for
            unmatched priors), a bool ``(B, N)`` mask of the priors that are
            positive or negative (not ignored), and box-offset targets
            ``(B, N, 4)`` (zero for non-positives).
        """
        bg_label = 1 if class_agnostic else self.num_classes
        labels = priors.new_full(priors.shape[:2], bg_label, dtype=torch.long)
        valid = priors.new_zeros(priors.shape[:2], dtype=torch.bool)
        targets = torch.zeros_like(priors)
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * len(batch_gt_instances)
        for i, (gts, ignores) in enumerate(
                zip(batch_gt_instances, batch_gt_instances_ignore)):
            pred = InstanceData(priors=priors[i])
            assign_result = assigner.assign(pred, gts, ignores)
            sampling = self.sampler.sample(assign_result, pred, gts)
            pos, neg = sampling.pos_inds, sampling.neg_inds
            valid[i, pos] = True
            valid[i, neg] = True
            if len(pos):
                labels[i, pos] = (0 if class_agnostic else
                                  sampling.pos_gt_labels)
                targets[i, pos] = self.bbox_coder.encode(
                    sampling.pos_priors, sampling.pos_gt_bboxes)
        return labels, valid, targets

    def multibox_loss(self,
                      cls_scores: Tensor,
                      bbox_preds: Tensor,
                      labels: Tensor,
                      valid: Tensor,
                      bbox_targets: Tensor,
                      bg_label: int,
                      neg_keep: Optional[Tensor] = None
                      ) -> Tuple[Tensor, Tensor]:
        """SSD's MultiBox loss with hard negative mining.

        Args:
            cls_scores (Tensor): Logits ``(B, N, K)``, background last.
            bbox_preds (Tensor): Box offsets ``(B, N, 4)``.
            labels (Tensor): Target labels ``(B, N)``.
            valid (Tensor): Non-ignored priors, bool ``(B, N)``.
            bbox_targets (Tensor): Offset targets ``(B, N, 4)``.
            bg_label (int): The background label (``K - 1``).
            neg_keep (Tensor, optional): Priors that may be mined as
                negatives, bool ``(B, N)`` (RefineDet's negative anchor
                filtering); every negative when None. Positives are never
                filtered.

        Returns:
            tuple[Tensor, Tensor]: Classification loss over the positives
            and the mined negatives, and smooth L1 over the positives, both
            divided by the number of positives in the batch (at least 1).
        """
        pos = valid & (labels != bg_label)
        neg_candidates = valid & (labels == bg_label)
        if neg_keep is not None:
            neg_candidates = neg_candidates & neg_keep
        avg_factor = max(int(pos.sum()), 1)
        num_imgs, num_priors, channels = cls_scores.shape
        cls_losses = self.loss_cls(
            cls_scores.reshape(-1, channels),
            labels.reshape(-1),
            reduction_override='none').reshape(num_imgs, num_priors)
        neg = hard_negative_mining(cls_losses, pos, neg_candidates,
                                   self.train_cfg['neg_pos_ratio'])
        loss_cls = cls_losses[pos | neg].sum() / avg_factor
        loss_bbox = self.loss_bbox(
            bbox_preds[pos], bbox_targets[pos], avg_factor=avg_factor)
        return loss_cls, loss_bbox

    def loss_by_feat(
            self,
            arm_cls_scores: List[Tensor],
            arm_bbox_preds: List[Tensor],
            odm_cls_scores: List[Tensor],
            odm_bbox_preds: List[Tensor],
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            batch_gt_instances_ignore: OptInstanceList = None
    ) -> Dict[str, Tensor]:
        """ARM and ODM losses.

        The ARM matches the anchors (``arm_assigner``); the ODM matches the
        ARM-refined anchors (``odm_assigner``). Negative anchor filtering
        removes refined anchors from the ODM's negative candidates only, as
        Caffe's ``MineHardExamples``: a filtered anchor matched to an object
        stays a positive.

        Args:
            arm_cls_scores, arm_bbox_preds, odm_cls_scores, odm_bbox_preds
                (list[Tensor]): The outputs of :meth:`forward`.
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels``.
            batch_img_metas (list[dict]): Image metas (unused: anchors may
                cross the image border, as in SSD).
            batch_gt_instances_ignore (list[InstanceData], optional):
                Ignored boxes (e.g. VOC "difficult").

        Returns:
            dict[str, Tensor]: ``loss_arm_cls``, ``loss_arm_bbox``,
            ``loss_odm_cls``, ``loss_odm_bbox``.
        """
        anchors = self._anchors(arm_cls_scores)
        arm_cls = flatten_levels(arm_cls_scores, 2)
        arm_deltas = flatten_levels(arm_bbox_preds, 4)
        odm_cls = flatten_levels(odm_cls_scores, self.cls_out_channels)
        odm_deltas = flatten_levels(odm_bbox_preds, 4)
        num_imgs = arm_cls.size(0)

        labels, valid, targets = self.get_targets(
            anchors.expand(num_imgs, -1, -1), self.arm_assigner,
            batch_gt_instances, batch_gt_instances_ignore,
            class_agnostic=True)
        loss_arm_cls, loss_arm_bbox = self.multibox_loss(
            arm_cls, arm_deltas, labels, valid, targets, bg_label=1)

        refined, keep = self.refine_anchors(anchors, arm_cls, arm_deltas)
        labels, valid, targets = self.get_targets(
            refined, self.odm_assigner, batch_gt_instances,
            batch_gt_instances_ignore, class_agnostic=False)
        # Caffe's MineHardExamples (bbox_util.cpp): the objectness filter
        # only removes negative candidates; positives, the 3:1 count and
        # the normaliser use every match.
        loss_odm_cls, loss_odm_bbox = self.multibox_loss(
            odm_cls, odm_deltas, labels, valid, targets,
            bg_label=self.num_classes, neg_keep=keep)
        return dict(
            loss_arm_cls=loss_arm_cls * self.arm_loss_weight,
            loss_arm_bbox=loss_arm_bbox * self.arm_loss_weight,
            loss_odm_cls=loss_odm_cls,
            loss_odm_bbox=loss_odm_bbox)

    def detection_candidates(
            self,
            arm_cls_scores: List[Tensor],
            arm_bbox_preds: List[Tensor],
            odm_cls_scores: List[Tensor],
            odm_bbox_preds: List[Tensor],
            cfg: ConfigDict,
            max_shapes: Sequence[Optional[Sequence[int]]]
    ) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """Per image, the ODM detections before NMS.

        As Caffe's ``DetectionOutput``: the filtered anchors dropped, the
        softmax class scores above ``score_thr`` and the ``nms_pre`` best of
        *each class* (Caffe's per-class ``top_k``) kept and decoded from the
        refined anchors. Traceable: the ONNX export runs it too.

        Args:
            arm_cls_scores, arm_bbox_preds, odm_cls_scores, odm_bbox_preds
                (list[Tensor]): The outputs of :meth:`forward`.
            cfg (ConfigDict): Test config.
            max_shapes (Sequence): Per image, the ``(H, W)`` to clip the
                boxes to, or None for unclipped boxes.

        Returns:
            list[tuple[Tensor, Tensor, Tensor]]: Boxes ``(n, 4)``, scores
            and labels of each image.
        """
        anchors = self._anchors(arm_cls_scores)
        refined, keep = self.refine_anchors(
            anchors, flatten_levels(arm_cls_scores, 2),
            flatten_levels(arm_bbox_preds, 4))
        odm_cls = flatten_levels(odm_cls_scores, self.cls_out_channels)
        odm_deltas = flatten_levels(odm_bbox_preds, 4)
        candidates = []
        for i, max_shape in enumerate(max_shapes):
            kept = keep[i].nonzero()[:, 0]
            candidates.append(
                decode_candidates(
                    odm_cls[i, kept].detach().softmax(-1)[:, :-1],
                    refined[i, kept], odm_deltas[i, kept].detach(),
                    self.bbox_coder, cfg.get('score_thr', 0),
                    cfg.get('nms_pre', -1), max_shape=max_shape))
        return candidates

    def predict_by_feat(self,
                        arm_cls_scores: List[Tensor],
                        arm_bbox_preds: List[Tensor],
                        odm_cls_scores: List[Tensor],
                        odm_bbox_preds: List[Tensor],
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: Optional[ConfigDict] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Decode ODM boxes from the refined anchors and run NMS.

        Per image, :meth:`detection_candidates` (clipped to the image), then
        per-class NMS and the ``max_per_img`` best (``keep_top_k``).

        Args:
            arm_cls_scores, arm_bbox_preds, odm_cls_scores, odm_bbox_preds
                (list[Tensor]): The outputs of :meth:`forward`.
            batch_img_metas (list[dict]): ``img_shape`` (and
                ``scale_factor`` with ``rescale``) of each image.
            cfg (ConfigDict, optional): Test config; ``test_cfg`` if None.
            rescale (bool): Map the boxes back to the original image.
                Defaults to False.
            with_nms (bool): Run NMS. Defaults to True.

        Returns:
            list[InstanceData]: ``bboxes`` (x1, y1, x2, y2), ``scores`` and
            ``labels`` of each image.
        """
        cfg = ConfigDict(
            copy.deepcopy(self.test_cfg if cfg is None else cfg))
        candidates = self.detection_candidates(
            arm_cls_scores, arm_bbox_preds, odm_cls_scores, odm_bbox_preds,
            cfg, [meta['img_shape'] for meta in batch_img_metas])
        results_list = []
        for (bboxes, scores, labels), img_meta in zip(candidates,
                                                      batch_img_metas):
            results = InstanceData(
                bboxes=bboxes, scores=scores, labels=labels)
            results_list.append(
                self._bbox_post_process(
                    results=results,
                    cfg=cfg,
                    rescale=rescale,
                    with_nms=with_nms,
                    img_meta=img_meta))
        return results_list
