from .osa_fpn import OSAFPN, OSAPAFPN

__all__ = ['OSAFPN', 'OSAPAFPN']
