from .densenet import DenseNet
from .dsod import DSODDenseNet
from .efficientnet import VoVDetEfficientNet
from .repvgg import RepVGG
from .vovnet import VoVNet

__all__ = [
    'VoVNet', 'RepVGG', 'VoVDetEfficientNet', 'DenseNet', 'DSODDenseNet'
]
