from .dsod_neck import DSODNeck
from .osa_fpn import OSAFPN, OSAPAFPN
from .refinedet_tcb import RefineDetTCB

__all__ = ['DSODNeck', 'OSAFPN', 'OSAPAFPN', 'RefineDetTCB']
