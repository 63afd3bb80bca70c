"""Deployment: the inference form of a trained detector (RepVGG branches
fused, BatchNorms folded into convs, optional channels-last), its
re-parameterised checkpoint, and the ONNX export of the whole detector
(:mod:`vovdet.deploy.onnx`, imported on demand: it needs the ``deploy``
extra)."""
from .inference_form import (TRANSFORM_TOLERANCE, InferenceForm,
                             InferenceFormHook, ReparameterizationError,
                             deployable_modules, feature_check, fold_conv_bn,
                             max_relative_difference, reparameterize_model,
                             to_inference_form)
from .reparameterize import (default_deploy_config_path, mark_deploy,
                             reparameterize_checkpoint,
                             reparameterize_state_dict)

__all__ = [
    'TRANSFORM_TOLERANCE', 'InferenceForm', 'InferenceFormHook',
    'ReparameterizationError', 'deployable_modules', 'feature_check',
    'fold_conv_bn', 'max_relative_difference', 'reparameterize_model',
    'to_inference_form', 'default_deploy_config_path', 'mark_deploy',
    'reparameterize_checkpoint', 'reparameterize_state_dict'
]
