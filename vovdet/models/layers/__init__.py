from .osa import OSAModule, OSAStage, osa_conv3x3

__all__ = ['OSAModule', 'OSAStage', 'osa_conv3x3']
