from .dsod_head import DSODHead
from .refinedet_head import RefineDetHead, hard_negative_mining

__all__ = ['DSODHead', 'RefineDetHead', 'hard_negative_mining']
