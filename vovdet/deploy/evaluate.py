"""Evaluating an exported detector on a config's test set, the way
``tools/test.py`` evaluates the PyTorch one.

:func:`evaluate` runs the config's test dataloader (one image per batch:
the graphs take one image) through the model's ``data_preprocessor``, asks
a ``predict`` callable for each image's detections in the input's pixels
and scores them with the config's ``test_evaluator`` (``CocoMetric``,
``VOCMetric``). :func:`onnx_predict` and :func:`pytorch_predict` make that
callable for an ONNX graph of :func:`~vovdet.deploy.export_onnx` and for a
PyTorch detector, so both are scored by the same loop on the same images.

The graphs return boxes in the preprocessed input's pixels, clipped to the
input, and masks pasted into it (:class:`~vovdet.deploy.base.
DetectorExport`); :func:`to_original_image` takes them back to the original
image as mmdet's ``predict(..., rescale=True)`` does: boxes clipped to the
unpadded ``img_shape`` and divided by the resize factor, masks cropped to
``img_shape`` and resized to ``ori_shape`` (nearest; mmdet pastes the mask
logits at the original size instead, so masks of a resized image can
differ along their border).
"""
import copy
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# (1, 3, H, W) preprocessed image, its data sample -> pred_instances
Predict = Callable[[Tensor, Any], Any]


def to_original_image(outputs: Dict[str, Any], sample: Any) -> Any:
    """A graph's ``boxes``/``scores``/``labels``/``masks`` (numpy or
    tensors, in the input's pixels) as mmdet ``pred_instances`` of the
    original image of ``sample`` (a ``DetDataSample``)."""
    from mmengine.structures import InstanceData
    height, width = sample.img_shape[:2]
    boxes = torch.as_tensor(np.asarray(outputs['boxes']), dtype=torch.float32)
    boxes = boxes.reshape(-1, 4).clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    scale = sample.metainfo.get('scale_factor', (1.0, 1.0))
    boxes /= boxes.new_tensor(scale).repeat(2)
    pred = InstanceData(
        bboxes=boxes,
        scores=torch.as_tensor(np.asarray(outputs['scores']),
                               dtype=torch.float32).reshape(-1),
        labels=torch.as_tensor(np.asarray(outputs['labels']),
                               dtype=torch.int64).reshape(-1))
    if 'masks' in outputs:
        masks = torch.as_tensor(np.asarray(outputs['masks']))
        masks = masks[:, :height, :width].float()
        ori_h, ori_w = sample.ori_shape[:2]
        if masks.shape[0] and (ori_h, ori_w) != (height, width):
            masks = F.interpolate(masks[None], size=(ori_h, ori_w),
                                  mode='nearest')[0]
        elif not masks.shape[0]:
            masks = masks.new_zeros((0, ori_h, ori_w))
        pred.masks = masks > 0.5
    return pred


def onnx_predict(runtime: Callable[[Tensor], Dict[str, np.ndarray]]
                 ) -> Predict:
    """:func:`evaluate`'s callable for an :class:`~vovdet.deploy.
    OnnxDetector` (or anything mapping an image to the graph's outputs).

    A graph exported with a fixed input size refuses a preprocessed image
    of another size, naming both and the fix."""
    fixed = getattr(runtime, 'input_size', None)

    def predict(image: Tensor, sample: Any) -> Any:
        size = tuple(image.shape[-2:])
        if fixed is not None and fixed != size:
            raise ValueError(
                f'the ONNX graph takes {fixed[0]}x{fixed[1]} images, the '
                f'test pipeline gives {size[0]}x{size[1]} '
                f"({sample.metainfo.get('img_path', 'an image')}); export "
                f'with --dynamic, or with --shape {size[0]} {size[1]}')
        return to_original_image(runtime(image), sample)

    return predict


def pytorch_predict(model: nn.Module) -> Predict:
    """:func:`evaluate`'s callable for a PyTorch detector: its own
    ``predict(..., rescale=True)``, as ``tools/test.py`` runs it."""

    def predict(image: Tensor, sample: Any) -> Any:
        with torch.no_grad():
            return model.predict(image, [copy.copy(sample)],
                                 rescale=True)[0].pred_instances

    return predict


def build_data_preprocessor(cfg: Any) -> nn.Module:
    """The config's ``model.data_preprocessor`` (what makes the graph's
    input from a loaded image), built alone."""
    from mmdet.registry import MODELS
    return MODELS.build(copy.deepcopy(cfg.model.data_preprocessor)).eval()


def _loader_cfg(cfg: Any, ann_file: Optional[str]) -> Any:
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.batch_size = 1
    loader.num_workers = 0
    loader.persistent_workers = False
    if ann_file is not None:
        loader.dataset.ann_file = ann_file
    return loader


def _preprocessed(loader: Any, data_preprocessor: nn.Module,
                  limit: Optional[int]) -> Iterator[Tuple[Tensor, Any]]:
    for index, batch in enumerate(loader):
        if limit is not None and index >= limit:
            return
        with torch.no_grad():
            data = data_preprocessor(batch, False)
        yield data['inputs'], data['data_samples'][0]


def preprocessed_images(cfg: Any,
                        data_preprocessor: nn.Module,
                        ann_file: Optional[str] = None,
                        limit: Optional[int] = None
                        ) -> Iterator[Tuple[Tensor, Any]]:
    """``(image, data_sample)`` of the config's test dataloader, one image
    each, through ``data_preprocessor`` (normalised, padded: the graph's
    input); ``ann_file`` replaces the test annotation file (relative to the
    dataset's ``data_root``, as in configs) and ``limit`` stops early."""
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(_loader_cfg(cfg, ann_file))
    yield from _preprocessed(loader, data_preprocessor, limit)


def evaluate(predict: Predict,
             cfg: Any,
             data_preprocessor: nn.Module,
             limit: Optional[int] = None) -> Dict[str, float]:
    """Score ``predict`` on the config's test set with its
    ``test_evaluator``; returns the evaluator's metrics (e.g.
    ``coco/bbox_mAP_50``).

    Args:
        predict (callable): ``(image, data_sample) -> pred_instances`` of
            the original image (:func:`onnx_predict`,
            :func:`pytorch_predict`).
        cfg (Config): The detector's config (test dataloader and
            evaluator).
        data_preprocessor (nn.Module): The detector's
            ``data_preprocessor``.
        limit (int, optional): Score only the first images (the others
            count as missed by a COCO metric; for tests).
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(_loader_cfg(cfg, None))
    evaluator = Evaluator(copy.deepcopy(cfg.test_evaluator))
    evaluator.dataset_meta = loader.dataset.metainfo
    count = 0
    for image, sample in _preprocessed(loader, data_preprocessor, limit):
        sample.pred_instances = predict(image, sample)
        evaluator.process(data_samples=[sample])
        count += 1
    return evaluator.evaluate(count)
