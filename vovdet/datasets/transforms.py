"""Data transforms that the official recipes need and mmdet lacks."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class UseDifficultGT(BaseTransform):
    """Train on the ground truth a dataset marked as ignored.

    mmdet's ``VOCDataset`` turns PASCAL VOC's ``difficult`` objects into
    ignored instances (``gt_ignore_flags``): they are neither positives nor
    negatives, and evaluation skips them. Caffe SSD's ``use_difficult_gt``
    trains on them as ordinary objects; DSOD does so on VOC
    (``DSOD300_pascal.py``: ``train_on_diff_gt = True``). Put this transform
    right after ``LoadAnnotations`` in the *training* pipeline only; the test
    pipeline keeps the flags, so evaluation still ignores difficult objects.

    VOC's loader also sets the flag for boxes smaller than
    ``filter_cfg.bbox_min_size`` when that is configured; those become
    ordinary ground truth too.

    Required keys: ``gt_ignore_flags`` (absent: nothing to do).
    Modified keys: ``gt_ignore_flags`` (all False).
    """

    def transform(self, results: dict) -> dict:
        flags = results.get('gt_ignore_flags')
        if flags is not None:
            results['gt_ignore_flags'] = np.zeros_like(flags, dtype=bool)
        return results
