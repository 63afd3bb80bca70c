"""vovdet: VoVNet, RepVGG, EfficientNet backbones, OSA-FPN necks, RefineDet
and DSOD for MMDetection 3.x.

Importing the package registers its modules into mmdet's registries (configs
do it with ``custom_imports = dict(imports=['vovdet'])``) and makes mmengine
load local checkpoints with ``weights_only=True`` plus an allow-list of the
types mmengine itself writes (see :mod:`vovdet.utils.checkpoint`).

``VOVDET_MMCV_OPS=torchvision`` (or ``auto``) makes ``mmcv.ops`` a
torchvision-backed stand-in before mmdet is imported, for machines without
mmcv's compiled ops (see :mod:`vovdet.utils.mmcv_ops`).

It also makes ``vovdet`` an mmengine scope (:mod:`vovdet.registry`), so the
configs shipped in the package are reachable as ``'vovdet::_base_/...'`` and
by model name (``model-index.yml``), see ``docs/model_zoo.md``.
"""
from .utils.mmcv_ops import configure_mmcv_ops

# before `models` imports mmdet, which imports mmcv.ops
configure_mmcv_ops()

from . import datasets, engine, models, registry, utils  # noqa: E402,F401
from .utils import install_safe_checkpoint_loader  # noqa: E402
from .version import __version__  # noqa: E402

install_safe_checkpoint_loader()
# 'SparseRoIAlign' as a roi_layer type (mmdet looks those up in mmcv.ops)
models.layers.register_roi_layers()

__all__ = ['__version__']
