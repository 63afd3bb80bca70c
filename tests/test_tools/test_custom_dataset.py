"""docs/custom_dataset.md is true: its configs, copied from the page, train
and test on generated folders whose class names, category ids and layout
differ from the demo's; a child config that sets a top-level data_root,
metainfo or num_classes without passing it on is refused, naming the key,
every place it misses and the fix."""
import json
import os
import os.path as osp
import re
import shutil
from xml.etree import ElementTree as ET

import pytest
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from tests.helpers import ROOT, run_tool
from vovdet.apis.common import run_cli
from vovdet.apis.train import main as train_main
from vovdet.utils import (ConfigOverrideError, check_top_level_overrides,
                          inherited_top_level_keys, safe_load_checkpoint)

DOC = osp.join(ROOT, 'docs', 'custom_dataset.md')
DEMO = osp.join(ROOT, 'configs', 'vovnet19slim_maskrcnn_shapes.py')
# shapes class -> (new name, new category id); hexagons are left out
RENAME = {'rectangle': ('box', 3), 'ellipse': ('disc', 7),
          'triangle': ('tri', 11)}
CLASSES = ('box', 'disc', 'tri')
# a few iterations on the 96 px test data, no validation while training
TINY = ['train_cfg.max_iters=2', 'train_cfg.val_interval=1000',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'default_hooks.checkpoint.interval=2',
        'model.test_cfg.rcnn.score_thr=0.0']


def doc_config(first_line, data_root):
    """The ```python block of the doc starting with ``first_line``, with
    its ``data_root`` pointed at ``data_root``."""
    with open(DOC, encoding='utf-8') as f:
        blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
    [block] = [b for b in blocks if b.startswith(first_line)]
    assert block.count("data_root = '") == 1
    return re.sub(r"data_root = '[^']*'", f"data_root = '{data_root}/'",
                  block)


def write_config(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def renamed_categories(shapes_root):
    with open(osp.join(shapes_root, 'annotations',
                       'instances_train.json')) as f:
        old = {c['id']: c['name'] for c in json.load(f)['categories']}
    return {i: RENAME[n] for i, n in old.items() if n in RENAME}


@pytest.fixture(scope='module')
def custom_coco(tmp_path_factory, shapes_root):
    """The shapes data as images/{train,val}/, annotations/{train,val}.json,
    with categories box=3, disc=7, tri=11 and no hexagons."""
    root = tmp_path_factory.mktemp('my_shapes')
    categories = renamed_categories(shapes_root)
    for split in ('train', 'val'):
        with open(osp.join(shapes_root, 'annotations',
                           f'instances_{split}.json')) as f:
            coco = json.load(f)
        os.makedirs(root / 'images' / split)
        for image in coco['images']:
            name = osp.basename(image['file_name'])
            shutil.copy(osp.join(shapes_root, image['file_name']),
                        root / 'images' / split / name)
            image['file_name'] = f'{split}/{name}'
        coco['annotations'] = [
            dict(a, category_id=categories[a['category_id']][1])
            for a in coco['annotations'] if a['category_id'] in categories]
        coco['categories'] = [dict(id=i, name=n) for n, i in
                              categories.values()]
        os.makedirs(root / 'annotations', exist_ok=True)
        with open(root / 'annotations' / f'{split}.json', 'w') as f:
            json.dump(coco, f)
    return str(root)


@pytest.fixture(scope='module')
def custom_voc(tmp_path_factory, shapes_root):
    """The shapes VOC data as JPEGImages/, Annotations/,
    ImageSets/Main/{train,val}.txt with the renamed classes."""
    root = tmp_path_factory.mktemp('my_voc')
    voc = osp.join(shapes_root, 'VOC2007')
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(root / sub)
    for split, new in (('trainval', 'train'), ('test', 'val')):
        shutil.copy(osp.join(voc, 'ImageSets', 'Main', f'{split}.txt'),
                    root / 'ImageSets' / 'Main' / f'{new}.txt')
    for name in os.listdir(osp.join(voc, 'Annotations')):
        tree = ET.parse(osp.join(voc, 'Annotations', name))
        for obj in tree.getroot().findall('object'):
            label = obj.find('name')
            if label.text in RENAME:
                label.text = RENAME[label.text][0]
            else:
                tree.getroot().remove(obj)
        tree.write(root / 'Annotations' / name)
        image = name.replace('.xml', '.jpg')
        shutil.copy(osp.join(voc, 'JPEGImages', image),
                    root / 'JPEGImages' / image)
    return str(root)


def train_sets(config, shapes_root):
    """The training set of ``config`` and the demo's on ``shapes_root``."""
    register_all_modules()
    cfg = Config.fromfile(config)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    shapes = Config.fromfile(DEMO).train_dataloader.dataset
    reference = DATASETS.build(dict(shapes, data_root=shapes_root + '/'))
    return dataset, reference


def test_doc_coco_config_trains_and_tests_on_a_custom_folder(
        tmp_path, custom_coco, shapes_root):
    config = write_config(
        tmp_path, 'my_shapes.py',
        doc_config('# my_shapes.py', custom_coco))
    # the labels follow metainfo.classes, whatever the category ids
    dataset, shapes = train_sets(config, shapes_root)
    assert dataset.metainfo['classes'] == CLASSES
    old = shapes.metainfo['classes']
    expected = [CLASSES.index(RENAME[old[i['bbox_label']]][0])
                for i in shapes.get_data_info(0)['instances']
                if old[i['bbox_label']] in RENAME]
    assert [i['bbox_label'] for i in
            dataset.get_data_info(0)['instances']] == expected

    work = str(tmp_path / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work,
              '--cfg-options', *TINY])
    ckpt = osp.join(work, 'iter_2.pth')
    state = safe_load_checkpoint(ckpt)
    assert tuple(state['meta']['dataset_meta']['classes']) == CLASSES
    # 3 classes + background in the box classifier, 3 mask channels
    assert state['state_dict']['roi_head.bbox_head.fc_cls.weight'].shape[
        0] == 4
    assert state['state_dict']['roi_head.mask_head.conv_logits.weight'].shape[
        0] == 3
    proc = run_tool(['tools/test.py', config, ckpt, '--work-dir', work,
                     '--cfg-options', *TINY])
    log = proc.stdout + proc.stderr
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    assert f"{custom_coco}/annotations/val.json" in log


def test_doc_voc_config_reads_a_custom_folder(tmp_path, custom_voc,
                                              shapes_root):
    config = write_config(tmp_path, 'my_voc.py',
                          doc_config('# my_voc.py', custom_voc))
    cfg = Config.fromfile(config)
    check_top_level_overrides(cfg, inherited_top_level_keys(config), config)
    assert cfg.model.bbox_head.num_classes == 3
    register_all_modules()
    for split, count in (('train', 8), ('val', 4)):
        dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
        assert dataset.metainfo['classes'] == CLASSES
        assert len(dataset) <= count
        labels = {i['bbox_label'] for d in range(len(dataset))
                  for i in dataset.get_data_info(d)['instances']}
        assert labels and labels <= {0, 1, 2}


def test_top_level_values_without_effect_are_refused(tmp_path, capsys,
                                                     custom_coco):
    child = write_config(
        tmp_path, 'child.py',
        f"_base_ = '{DEMO}'\n"
        f"data_root = '{custom_coco}/'\n"
        "metainfo = dict(classes=('box', 'disc', 'tri', 'star', 'moon'))\n"
        'num_classes = 5\n')
    # what tools/train.py runs, in this process
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: train_main([child, '--work-dir', str(tmp_path)]))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {child} sets top-level data_root = "
                          f"'{custom_coco}/', but these places disagree:")
    for place in (
            "train_dataloader.dataset.data_root = 'data/shapes/'",
            "test_dataloader.dataset.data_root = 'data/shapes/'",
            "val_dataloader.dataset.metainfo.classes = ('rectangle', ",
            # the base's 4 colours merged into the 5-class metainfo
            'train_dataloader.dataset.metainfo.palette has 4 colours for 5 '
            'classes',
            'model.roi_head.bbox_head.num_classes = 4',
            'model.roi_head.mask_head.num_classes = 4',
            'train_dataloader = dict(dataset=dict(data_root=data_root))',
            'give metainfo a palette with one (R, G, B) per class',
            'model = dict(roi_head=dict(bbox_head=dict(num_classes='
            'num_classes)))'):
        assert place in err
    # refused before anything was built or written
    assert sorted(os.listdir(tmp_path)) == ['child.py']


def test_an_evaluator_reading_another_file_is_refused(tmp_path,
                                                      custom_coco):
    text = doc_config('# my_shapes.py', custom_coco).replace(
        "val_evaluator = dict(ann_file=data_root + 'annotations/val.json')",
        'val_evaluator = dict()')
    config = write_config(tmp_path, 'stale.py', text)
    with pytest.raises(ConfigOverrideError) as err:
        check_top_level_overrides(Config.fromfile(config),
                                  inherited_top_level_keys(config), config)
    assert ("val_evaluator.ann_file = 'data/shapes/annotations/"
            "instances_val.json' (its dataset reads "
            f"'{custom_coco}/annotations/val.json')") in str(err.value)


def test_cfg_options_top_level_value_is_checked_too():
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({'data_root': '/elsewhere/'})
    with pytest.raises(ConfigOverrideError, match='--cfg-options sets '
                       "top-level data_root = '/elsewhere/'"):
        check_top_level_overrides(cfg, ['data_root'], '--cfg-options')
    # all places set as well: accepted
    cfg.merge_from_dict({
        f'{split}_dataloader.dataset.data_root': '/elsewhere/'
        for split in ('train', 'val', 'test')})
    cfg.merge_from_dict({
        f'{split}_evaluator.ann_file':
        '/elsewhere/annotations/instances_val.json'
        for split in ('val', 'test')})
    check_top_level_overrides(cfg, ['data_root'], '--cfg-options')


def test_only_inheriting_configs_are_checked(tmp_path):
    # the demo sets all three itself and passes them on
    assert inherited_top_level_keys(DEMO) == {'data_root', 'metainfo',
                                              'num_classes'}
    check_top_level_overrides(Config.fromfile(DEMO),
                              inherited_top_level_keys(DEMO), DEMO)
    # a dumped config expands everything itself: nothing to check
    cfg = Config.fromfile(DEMO)
    cfg.train_dataloader.dataset.data_root = '/elsewhere/'
    dumped = str(tmp_path / 'dumped.py')
    cfg.dump(dumped)
    assert inherited_top_level_keys(dumped) == set()
