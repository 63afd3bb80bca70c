"""vovdet: VoVNet, RepVGG, EfficientNet backbones, OSA-FPN necks, RefineDet
and DSOD for MMDetection 3.x.

Importing the package registers its modules into mmdet's registries (configs
do it with ``custom_imports = dict(imports=['vovdet'])``) and makes mmengine
load local checkpoints with ``weights_only=True`` plus an allow-list of the
types mmengine itself writes (see :mod:`vovdet.utils.checkpoint`).
"""
from . import datasets, models, utils  # noqa: F401
from .utils import install_safe_checkpoint_loader
from .version import __version__

install_safe_checkpoint_loader()

__all__ = ['__version__']
