"""RefineDet: single-shot refinement detector.

Reference:
    Zhang et al., "Single-Shot Refinement Neural Network for Object
    Detection", CVPR 2018; with the VoVNet backbone as in Lee et al.,
    CVPRW 2019, Table 4 (``paper_specs.md`` §2b, §3).
"""
from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig


@MODELS.register_module()
class RefineDet(SingleStageDetector):
    """RefineDet = backbone + ``RefineDetTCB`` neck + ``RefineDetHead``.

    ``extract_feat`` returns the neck's flat tuple: the four source maps at
    strides 8/16/32/64 (backbone stages + the extra bottleneck; the ARM's
    inputs) followed by the four TCB maps (the ODM's inputs). The head's
    ARM refines the anchors and filters easy negatives; its ODM classifies
    and regresses from the refined anchors. Training, prediction and tensor
    mode are mmdet's ``SingleStageDetector`` ones; this class checks that
    the neck and the head agree on the levels and channels.

    Args:
        backbone (dict): Backbone config; its outputs are the neck's
            ``in_channels`` maps (strides 8/16/32).
        neck (dict): ``RefineDetTCB`` config (required).
        bbox_head (dict): ``RefineDetHead`` config.
        train_cfg (dict, optional): Passed to the head.
        test_cfg (dict, optional): Passed to the head.
        data_preprocessor (dict, optional): ``DetDataPreprocessor`` config.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if neck is None:
            raise ValueError("RefineDet needs a neck that builds the TCBs; "
                             "use neck=dict(type='RefineDetTCB', ...)")
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        sources = tuple(self.neck.source_channels)
        if sources != tuple(self.bbox_head.in_channels):
            raise ValueError(
                f'the neck gives source maps with {sources} channels but '
                f'bbox_head.in_channels is '
                f'{tuple(self.bbox_head.in_channels)}; set bbox_head.'
                f'in_channels={sources}')
        odm = tuple(self.neck.odm_channels)
        if odm != tuple(self.bbox_head.feat_channels):
            raise ValueError(
                f'the neck gives ODM maps with {odm} channels but '
                f'bbox_head.feat_channels is '
                f'{tuple(self.bbox_head.feat_channels)}; set bbox_head.'
                f'feat_channels={odm if len(set(odm)) > 1 else odm[0]}')
