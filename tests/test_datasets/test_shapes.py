import hashlib
import json
import os
import os.path as osp
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vovdet.datasets import (SHAPES_CLASSES, generate_shapes_dataset,
                             shapes_dataset_ready)

SMALL = dict(num_train=6, num_val=3, image_size=96, max_objects=3,
             min_radius=10, max_radius=30)


def tree_digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(folder, name)
            digest.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_generator_is_deterministic(tmp_path):
    generate_shapes_dataset(str(tmp_path / 'a'), seed=3, **SMALL)
    generate_shapes_dataset(str(tmp_path / 'b'), seed=3, **SMALL)
    generate_shapes_dataset(str(tmp_path / 'c'), seed=4, **SMALL)
    assert tree_digest(tmp_path / 'a') == tree_digest(tmp_path / 'b')
    assert tree_digest(tmp_path / 'a') != tree_digest(tmp_path / 'c')


def test_coco_annotations_are_exact(tmp_path):
    root = str(tmp_path)
    generate_shapes_dataset(root, seed=0, **SMALL)
    coco = COCO(osp.join(root, 'annotations', 'instances_train.json'))
    assert len(coco.getImgIds()) == SMALL['num_train']
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        SHAPES_CLASSES)
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns
    for ann in anns:
        img = coco.loadImgs(ann['image_id'])[0]
        assert osp.isfile(osp.join(root, img['file_name']))
        rle = mask_utils.frPyObjects(ann['segmentation'], img['height'],
                                     img['width'])
        mask = mask_utils.decode(mask_utils.merge(rle))
        # polygon masks reproduce the recorded area and box closely
        assert abs(int(mask.sum()) - ann['area']) <= 0.15 * ann['area'] + 20
        x, y, w, h = ann['bbox']
        ys, xs = np.nonzero(mask)
        assert xs.min() >= x - 1 and xs.max() <= x + w
        assert ys.min() >= y - 1 and ys.max() <= y + h
        assert 0 <= x and x + w <= img['width']


def test_voc_files_match_coco(tmp_path):
    root = str(tmp_path)
    generate_shapes_dataset(root, seed=0, **SMALL)
    voc = osp.join(root, 'VOC2007')
    with open(osp.join(voc, 'ImageSets', 'Main', 'test.txt')) as f:
        test_ids = f.read().split()
    assert len(test_ids) == SMALL['num_val']
    with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
        coco = json.load(f)
    first = coco['images'][0]
    name = osp.splitext(osp.basename(first['file_name']))[0]
    assert name == test_ids[0]
    xml = ET.parse(osp.join(voc, 'Annotations', f'{name}.xml')).getroot()
    objs = xml.findall('object')
    anns = [a for a in coco['annotations'] if a['image_id'] == first['id']]
    assert len(objs) == len(anns)
    for obj, ann in zip(objs, anns):
        assert obj.find('name').text == SHAPES_CLASSES[ann['category_id'] - 1]
        xmin = int(obj.find('bndbox/xmin').text)
        assert xmin - 1 == ann['bbox'][0]


def test_ready_marker(tmp_path):
    root = str(tmp_path)
    assert not shapes_dataset_ready(root)
    generate_shapes_dataset(root, seed=0, **SMALL)
    assert shapes_dataset_ready(root, seed=0, **SMALL)
    assert not shapes_dataset_ready(root, seed=1)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='does not fit'):
        generate_shapes_dataset(str(tmp_path), image_size=50, max_radius=30)
    with pytest.raises(ValueError, match='positive'):
        generate_shapes_dataset(str(tmp_path), num_train=0)
