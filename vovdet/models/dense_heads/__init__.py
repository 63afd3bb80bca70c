from .detection_output import (decode_candidates, flatten_levels,
                               per_class_topk)
from .dsod_head import DSODHead
from .refinedet_head import RefineDetHead, hard_negative_mining
from .ssd_head import PredictableSSDHead

__all__ = [
    'DSODHead', 'PredictableSSDHead', 'RefineDetHead', 'decode_candidates',
    'flatten_levels', 'hard_negative_mining', 'per_class_topk'
]
