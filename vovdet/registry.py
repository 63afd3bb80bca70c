"""``vovdet`` as an mmengine scope, for the packaged configs.

vovdet's modules are registered into mmdet's registries (scope ``mmdet``).
Two mmengine mechanisms address a package by its own scope:

- ``_base_ = 'vovdet::_base_/...'`` resolves the file through the package
  (``vovdet/.mim/configs``) only for a name in mmengine's
  ``MODULE2PACKAGE``, and marks what it loads with ``_scope_='vovdet'``;
- ``DetInferencer(model='vovnet39_maskrcnn_coco', scope='vovdet')`` reads
  the package's ``model-index.yml`` and builds with ``vovdet`` as the
  default scope.

Building under the scope ``vovdet`` looks up ``vovdet.registry`` and the
registries of that scope. The registries below are empty children of
mmdet's (of mmengine's for ``FUNCTIONS``), so every name resolves to the
module registered there (vovdet's own included) exactly as under ``mmdet``.
"""
from mmdet import registry as mmdet_registry
from mmengine.config.utils import MODULE2PACKAGE
from mmengine import registry as mmengine_registry
from mmengine.registry import Registry

SCOPE = 'vovdet'
# import name -> pip name; read by mmengine's `pkg::` config paths and
# inferencer model names
MODULE2PACKAGE.setdefault(SCOPE, 'vovdet')


# A child registry imports its own locations before a lookup, not its
# parent's: these are the packages mmdet's `register_all_modules` imports.
LOCATIONS = ['vovdet', 'mmdet.datasets', 'mmdet.engine', 'mmdet.evaluation',
             'mmdet.models', 'mmdet.visualization']


def _child(parent: Registry) -> Registry:
    return Registry(parent.name, parent=parent, scope=SCOPE,
                    locations=LOCATIONS)


RUNNERS = _child(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS)
HOOKS = _child(mmdet_registry.HOOKS)
DATASETS = _child(mmdet_registry.DATASETS)
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS)
MODELS = _child(mmdet_registry.MODELS)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS)
EVALUATOR = _child(mmdet_registry.EVALUATOR)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)
# mmdet has no child of mmengine's (collate functions such as
# `pseudo_collate`, which DetInferencer builds)
FUNCTIONS = _child(mmengine_registry.FUNCTIONS)
