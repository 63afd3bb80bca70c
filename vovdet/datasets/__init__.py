from .shapes import (SHAPES_CLASSES, SHAPES_PALETTE, generate_shapes_dataset,
                     shapes_dataset_ready)
from .transforms import UseDifficultGT

__all__ = [
    'SHAPES_CLASSES', 'SHAPES_PALETTE', 'UseDifficultGT',
    'generate_shapes_dataset', 'shapes_dataset_ready'
]
