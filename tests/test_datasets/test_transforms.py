"""UseDifficultGT: DSOD's `train_on_diff_gt` on mmdet's VOC loader."""
import os.path as osp

import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import vovdet  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

XML = """<annotation><size><width>64</width><height>48</height><depth>3</depth>
</size>
<object><name>ellipse</name><difficult>0</difficult><bndbox><xmin>5</xmin>
<ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>hexagon</name><difficult>1</difficult><bndbox><xmin>32</xmin>
<ymin>8</ymin><xmax>60</xmax><ymax>44</ymax></bndbox></object>
</annotation>"""


@pytest.fixture
def voc_root(tmp_path):
    import cv2
    root = tmp_path / 'VOCdevkit'
    voc = root / 'VOC2007'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (voc / sub).mkdir(parents=True)
    (voc / 'Annotations' / '000001.xml').write_text(XML)
    cv2.imwrite(str(voc / 'JPEGImages' / '000001.jpg'),
                np.full((48, 64, 3), 128, np.uint8))
    (voc / 'ImageSets' / 'Main' / 'trainval.txt').write_text('000001\n')
    return str(root) + '/'


def load(voc_root, with_transform):
    register_all_modules()
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True)]
    if with_transform:
        pipeline.append(dict(type='UseDifficultGT'))
    pipeline.append(dict(type='PackDetInputs'))
    dataset = DATASETS.build(
        dict(type='VOCDataset', data_root=voc_root,
             ann_file='VOC2007/ImageSets/Main/trainval.txt',
             data_prefix=dict(sub_data_root='VOC2007/'),
             metainfo=dict(classes=('rectangle', 'ellipse', 'triangle',
                                    'hexagon')),
             pipeline=pipeline))
    return dataset[0]['data_samples']


def test_difficult_objects_become_ground_truth(voc_root):
    plain = load(voc_root, with_transform=False)
    # mmdet's loader: the difficult hexagon is an ignored instance
    assert plain.gt_instances.labels.tolist() == [1]
    assert plain.ignored_instances.labels.tolist() == [3]
    trained = load(voc_root, with_transform=True)
    assert trained.gt_instances.labels.tolist() == [1, 3]
    assert len(trained.ignored_instances) == 0
    np.testing.assert_allclose(trained.gt_instances.bboxes.tensor.numpy(),
                               [[4, 5, 29, 39], [31, 7, 59, 43]])


def test_only_dsod_voc_training_uses_difficult_objects():
    # DSOD300_pascal.py: train_on_diff_gt = True; VoVNet-RefineDet's
    # VoV39_VOC2007_320.py: False. Test pipelines never use it.
    for name, expected in (('dsod300_voc07.py', True),
                           ('vovnet27slim_dsod300_voc07.py', True),
                           ('vovnet39_refinedet320_voc07.py', False)):
        cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
        train = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        test = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
        assert ('UseDifficultGT' in train) is expected
        if expected:
            assert train.index('UseDifficultGT') == train.index(
                'LoadAnnotations') + 1
        assert 'UseDifficultGT' not in test
