"""DSOD's prediction head: an SSD head with L2Norm and BN on every scale.

Reference:
    Shen et al., "DSOD: Learning Deeply Supervised Object Detectors from
    Scratch", ICCV 2017; official Caffe code ``szq0214/DSOD``
    (``DSOD300_pascal.py``: ``normalizations = [20] * 6``,
    ``use_batchnorm=True``, ``kernel_size=3``).

Anchors, target assignment and the loss with 3:1 hard negative mining are
mmdet's ``SSDHead`` machinery, with two changes that follow the Caffe code:
every prior is trained (mmdet's valid flags would drop the priors of a
scale whose step overhangs the image), and the pre-NMS top-k is taken per
class (Caffe's ``DetectionOutput``).
"""
import copy
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models.necks.ssd_neck import L2Norm
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, MultiConfig, OptConfigType
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from .detection_output import decode_candidates, flatten_levels
from .ssd_head import PredictableSSDHead


@MODELS.register_module()
class DSODHead(PredictableSSDHead):
    """SSD head whose every input scale goes through L2Norm, and whose 3x3
    class and box convolutions are followed by BN.

    Per scale: ``L2Norm(scale=20)`` (a learnable per-channel scale,
    initialised to ``l2_norm_scale``), then two parallel 3x3 convs without
    bias, each followed by a norm layer and no activation, predicting
    ``A * (num_classes + 1)`` class logits and ``A * 4`` box deltas for the
    ``A`` anchors of that scale.

    The defaults are DSOD300 on PASCAL VOC: six scales of 800, 512, 512, 256,
    256, 256 channels; anchors with min sizes 30/60/111/162/213/264, max
    sizes 60/111/162/213/264/315, steps 8/16/32/64/100/300 and aspect ratios
    [2], [2, 3], [2, 3], [2, 3], [2], [2] (4, 6, 6, 6, 4, 4 anchors per
    location); box deltas with SSD's variances (0.1, 0.1, 0.2, 0.2).

    Args:
        num_classes (int): Object classes (background excluded).
            Defaults to 20.
        in_channels (Sequence[int]): Channels of each input scale.
        l2_norm_scale (float): Initial value of every L2Norm scale.
            Defaults to 20.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Norm after each prediction conv; None
            gives a plain SSD prediction conv with bias. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        anchor_generator (dict): mmdet ``SSDAnchorGenerator`` config.
        bbox_coder (dict): Box coder config.
        reg_decoded_bbox (bool): Apply the box loss to decoded boxes.
            Defaults to False.
        train_cfg (dict, optional): ``assigner``, ``neg_pos_ratio``,
            ``smoothl1_beta`` ... as for mmdet's ``SSDHead``.
        test_cfg (dict, optional): ``nms_pre`` (candidates kept *per class*
            before NMS, Caffe's ``top_k``: 400 in DSOD300_pascal.py),
            ``score_thr``, ``nms``, ``max_per_img`` (``keep_top_k``).
        init_cfg (dict or list[dict]): Initialization config. Defaults to
            Xavier (uniform) for convs, as SSD.
    """

    def __init__(
        self,
        num_classes: int = 20,
        in_channels: Sequence[int] = (800, 512, 512, 256, 256, 256),
        l2_norm_scale: float = 20.,
        conv_cfg: OptConfigType = None,
        norm_cfg: OptConfigType = dict(type='BN', requires_grad=True),
        anchor_generator: ConfigType = dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            strides=[8, 16, 32, 64, 100, 300],
            ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            min_sizes=[30, 60, 111, 162, 213, 264],
            max_sizes=[60, 111, 162, 213, 264, 315]),
        bbox_coder: ConfigType = dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_decoded_bbox: bool = False,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        init_cfg: MultiConfig = dict(
            type='Xavier', layer='Conv2d', distribution='uniform', bias=0)
    ) -> None:
        in_channels = tuple(in_channels)
        num_levels = len(anchor_generator['strides'])
        if len(in_channels) != num_levels:
            raise ValueError(
                f'DSODHead got {len(in_channels)} in_channels but the anchor '
                f'generator has {num_levels} levels; give one channel count '
                f'per anchor level')
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            anchor_generator=anchor_generator,
            bbox_coder=bbox_coder,
            reg_decoded_bbox=reg_decoded_bbox,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)
        self.l2_norm_scale = l2_norm_scale
        self.l2_norms = nn.ModuleList()
        for channels in in_channels:
            norm = L2Norm(channels, scale=l2_norm_scale)
            # mmdet's L2Norm leaves its weight uninitialised; DSOD starts it
            # at the scale (Caffe Normalize, scale_filler constant 20).
            nn.init.constant_(norm.weight, l2_norm_scale)
            self.l2_norms.append(norm)

    def _init_layers(self) -> None:
        """Build one class conv and one box conv (+ norm) per scale."""
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for channels, num_anchors in zip(self.in_channels,
                                         self.num_base_priors):
            for convs, out in ((self.cls_convs, self.cls_out_channels),
                               (self.reg_convs, 4)):
                convs.append(
                    ConvModule(
                        channels,
                        num_anchors * out,
                        3,
                        padding=1,
                        conv_cfg=self.conv_cfg,
                        norm_cfg=self.norm_cfg,
                        act_cfg=None))

    def forward(self, x: Tuple[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """L2-normalise every scale, then predict.

        Args:
            x (tuple[Tensor]): The scales, finest first.

        Returns:
            tuple[list[Tensor], list[Tensor]]: Class scores
            ``(N, A * (num_classes + 1), H, W)`` and box deltas
            ``(N, A * 4, H, W)`` per scale.
        """
        return super().forward(
            tuple(norm(feat) for norm, feat in zip(self.l2_norms, x)))

    def get_anchors(self,
                    featmap_sizes: List[tuple],
                    batch_img_metas: List[dict],
                    device: Union[torch.device, str] = 'cuda'
                    ) -> Tuple[List[List[Tensor]], List[List[Tensor]]]:
        """mmdet's anchors, every one of them valid for training.

        ``SSDAnchorGenerator.valid_flags`` keeps ``ceil(300 / step)``
        locations per side, so at DSOD300's last scale (2x2 map, step 300)
        only 1 of the 4 locations would be trained, while all 4 are scored
        at test time. Caffe's ``MultiBoxLoss`` trains every prior
        (``PriorBox`` with ``clip=False``, no valid mask).
        """
        anchor_list, valid_flag_list = super().get_anchors(
            featmap_sizes, batch_img_metas, device=device)
        valid_flag_list = [[torch.ones_like(flags) for flags in img_flags]
                           for img_flags in valid_flag_list]
        return anchor_list, valid_flag_list

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Tensor],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigDict,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """One image's detections, as Caffe's ``DetectionOutput``.

        Softmax scores of all scales together, those above ``score_thr``
        and the ``nms_pre`` best of each class, decoded, then per-class NMS
        and the ``max_per_img`` best (mmdet's ``_bbox_post_process``).
        """
        cfg = copy.deepcopy(self.test_cfg if cfg is None else cfg)
        cls_scores = flatten_levels([s[None] for s in cls_score_list],
                                    self.cls_out_channels)[0]
        bbox_preds = flatten_levels([p[None] for p in bbox_pred_list], 4)[0]
        results = InstanceData()
        results.bboxes, results.scores, results.labels = decode_candidates(
            cls_scores.softmax(-1)[:, :-1], torch.cat(mlvl_priors),
            bbox_preds, self.bbox_coder, cfg.get('score_thr', 0),
            cfg.get('nms_pre', -1), max_shape=img_meta['img_shape'])
        return self._bbox_post_process(
            results=results,
            cfg=cfg,
            rescale=rescale,
            with_nms=with_nms,
            img_meta=img_meta)
