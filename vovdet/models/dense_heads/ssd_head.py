"""mmdet's ``SSDHead``, able to predict under mmdet 3.3.

mmdet 3.3.0's ``SSDHead`` computes its loss inline and never builds a
``loss_cls`` module, but ``BaseDenseHead._predict_by_feat_single`` reads
``self.loss_cls`` (open-mmlab/mmdetection#11305, #11780), so a plain
``SSDHead`` detector fails at test time with ``AttributeError``. This class
is ``SSDHead`` with only that attribute added; architecture, anchors,
targets, loss and post-processing are mmdet's. It is the SSD baseline of the
learning-parity benchmarks (``docs/refinedet.md``, ``docs/dsod.md``) and the
base of :class:`DSODHead`.
"""
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class PredictableSSDHead(SSDHead):
    """mmdet's ``SSDHead`` with the ``loss_cls`` attribute its predict path
    reads (None: SSD's softmax loss is computed inline). Takes exactly
    ``SSDHead``'s arguments."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_cls = None
