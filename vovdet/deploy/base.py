"""The export wrapper every detector family derives from."""
from typing import Tuple

import torch.nn as nn


class DetectorExport(nn.Module):
    """A detector in its inference form whose ``forward(image)`` is the whole
    of ``predict`` for one preprocessed image: the network, box decoding and
    the family's post-processing, written with traceable ops
    (:mod:`vovdet.deploy.ops`) and the heads' own functions.

    ``image`` is what ``model.data_preprocessor`` gives (normalised, RGB,
    padded), of shape ``(1, 3, H, W)``; the image is taken to fill it, so
    boxes are clipped to ``H x W``. Outputs are in that image's pixels.

    Attributes:
        family (str): The detector family, for messages.
        output_names (tuple[str]): Names of the outputs, in order.
        min_opset (int): The lowest ONNX opset its ops exist in.
    """
    family = ''
    output_names: Tuple[str, ...] = ('boxes', 'scores', 'labels')
    min_opset = 13

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        # eval, and so is the detector: torch.onnx.export restores the
        # wrapper's mode after tracing, recursively
        self.eval()

    @staticmethod
    def supports(detector: nn.Module) -> bool:
        """Whether this wrapper exports ``detector``."""
        raise NotImplementedError
