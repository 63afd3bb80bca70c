"""Deployment: the inference form of a trained detector (RepVGG branches
fused, BatchNorms folded into convs, optional channels-last), its
re-parameterised checkpoint, and the ONNX export of the whole detector with
its post-processing (:mod:`vovdet.deploy.onnx`), scored on a test set
(:mod:`vovdet.deploy.evaluate`) and quantized to INT8
(:mod:`vovdet.deploy.quantize`); onnx and onnxruntime, the ``deploy``
extra, are imported only when used."""
from .inference_form import (TRANSFORM_TOLERANCE, InferenceForm,
                             InferenceFormHook, ReparameterizationError,
                             deployable_modules, feature_check, fold_conv_bn,
                             max_relative_difference, reparameterize_model,
                             to_inference_form)
from .onnx import (EXPORT_WRAPPERS, ExportResult, MissingDeployDependency,
                   OnnxDetector, build_detector, export_onnx, export_wrapper)
from .evaluate import evaluate, onnx_predict, pytorch_predict
from .ops import ExportError
from .quantize import QuantizeResult, calibration_images, quantize_onnx
from .reparameterize import (default_deploy_config_path, mark_deploy,
                             reparameterize_checkpoint,
                             reparameterize_state_dict)

__all__ = [
    'TRANSFORM_TOLERANCE', 'InferenceForm', 'InferenceFormHook',
    'ReparameterizationError', 'deployable_modules', 'feature_check',
    'fold_conv_bn', 'max_relative_difference', 'reparameterize_model',
    'to_inference_form', 'default_deploy_config_path', 'mark_deploy',
    'reparameterize_checkpoint', 'reparameterize_state_dict',
    'EXPORT_WRAPPERS', 'ExportError', 'ExportResult',
    'MissingDeployDependency', 'OnnxDetector', 'build_detector',
    'export_onnx', 'export_wrapper', 'evaluate', 'onnx_predict',
    'pytorch_predict', 'QuantizeResult', 'calibration_images',
    'quantize_onnx'
]
