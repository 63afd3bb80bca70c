"""Data that does not fit: missing or malformed files, invalid COCO boxes,
and heads whose num_classes differs from the dataset's classes. Each is
reported before training or testing starts, naming the file or key."""
import glob
import json
import os
import os.path as osp
import shutil

import pytest
from mmengine.config import Config

from tests.helpers import ROOT, run_tool, tiny_config
from vovdet.apis import test as test_tool
from vovdet.apis import train
from vovdet.utils import ModelConfigError, check_dataset_files


def test_missing_coco_fails_fast_with_instructions(tmp_path):
    proc = run_tool([
        osp.join(ROOT, 'tools', 'train.py'),
        osp.join(ROOT, 'configs', 'vovnet39_maskrcnn_coco.py')
    ], cwd=str(tmp_path), check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'data/coco/annotations/instances_train2017.json' in proc.stderr
    assert 'train_dataloader.dataset.data_root' in proc.stderr


def test_malformed_annotation_names_the_file(tmp_path, shapes_root):
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    ann = osp.join(root, 'annotations', 'instances_train.json')
    with open(ann, 'w') as f:
        f.write('{"images": [')
    cfg = tiny_config(tmp_path, root, 2)
    proc = run_tool(['tools/train.py', cfg, '--work-dir',
                     str(tmp_path / 'w')], check=False)
    assert proc.returncode == 1
    assert 'instances_train.json' in proc.stderr
    assert 'not valid JSON' in proc.stderr


def test_corrupt_image_names_the_file(tmp_path, shapes_root):
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
        first = json.load(f)['images'][0]['file_name']
    with open(osp.join(root, first), 'wb') as f:
        f.write(b'this is not a jpeg')
    from mmdet.registry import TRANSFORMS
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    with pytest.raises(Exception) as err:
        load(dict(img_path=osp.join(root, first)))
    assert first.split('/')[-1] in str(err.value)
    # ... and training refuses to start, listing it with a missing one
    with open(osp.join(root, 'annotations', 'instances_train.json')) as f:
        missing = json.load(f)['images'][1]['file_name']
    os.remove(osp.join(root, missing))
    proc = run_tool(['tools/train.py', tiny_config(tmp_path, root, 2),
                     '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert f"{missing}': missing" in proc.stderr
    assert '1 of the 8 train images listed' in proc.stderr
    assert not (tmp_path / 'w' / 'iter_2.pth').exists()


def voc_shapes_config(tmp_path, name, data_root, options=None):
    """A shapes config of the VOC layout pointed at ``data_root``."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root + '/'
    cfg.merge_from_dict(options or {})
    path = str(tmp_path / name)
    cfg.dump(path)
    return path


@pytest.mark.parametrize('damage,message', [
    (lambda xml: xml.replace('<xmin>', '<xmin>1O', 1),
     "<xmin> is '1O"),
    (lambda xml: xml[:len(xml) // 2], 'is not valid XML'),
])
def test_voc_xml_errors_name_the_file(tmp_path, shapes_root, damage,
                                      message):
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    xml = sorted(glob.glob(osp.join(root, 'VOC2007', 'Annotations',
                                    '*.xml')))[0]
    with open(xml) as f:
        text = f.read()
    with open(xml, 'w') as f:
        f.write(damage(text))
    path = voc_shapes_config(tmp_path, 'vovnet19slim_refinedet192_shapes.py',
                             root)
    proc = run_tool(['tools/train.py', path, '--work-dir',
                     str(tmp_path / 'w')], check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert osp.basename(xml) in proc.stderr and message in proc.stderr


def test_invalid_coco_boxes_are_reported_once_per_file(tmp_path, shapes_root,
                                                       capsys):
    # mmdet's CocoDataset dropped them without a word: their objects became
    # background
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    ann_file = osp.join(root, 'annotations', 'instances_train.json')
    with open(ann_file) as f:
        data = json.load(f)
    anns = data['annotations']
    anns[0]['bbox'][2] = -5.0  # negative width
    anns[1]['area'] = 0  # zero area
    anns[2]['bbox'][0] = 1000.0  # outside the 96 px image
    anns[3]['category_id'] = 99  # no such category
    with open(ann_file, 'w') as f:
        json.dump(data, f)
    cfg = Config.fromfile(tiny_config(tmp_path, root, 2))
    check_dataset_files(cfg, splits=('train', ))
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if 'warning' in line]
    assert len(warnings) == 1
    [line] = warnings
    assert f"'{ann_file}': 4 of the {len(anns)} annotations will be " \
        'dropped' in line
    for reason, ann in [('a width or height below 1 pixel', anns[0]),
                        ('an area of 0 or less', anns[1]),
                        ('a box outside its image', anns[2]),
                        ('a category_id that no category defines', anns[3])]:
        assert f"1 with {reason} (id {ann['id']})" in line
    # exactly those are the ones mmdet's loader drops
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules()
    dataset = DATASETS.build(
        dict(cfg.train_dataloader.dataset, pipeline=[], test_mode=True))
    assert sum(len(dataset.get_data_info(i)['instances'])
               for i in range(len(dataset))) == len(anns) - 4


@pytest.mark.parametrize('config,tool,option,ann_file', [
    # Mask R-CNN died with a bare IndexError; 80 on 4 classes trained
    ('demo', 'train', 'model.roi_head.bbox_head.num_classes=80',
     'annotations/instances_train.json'),
    ('demo', 'test', 'model.roi_head.mask_head.num_classes=3',
     'annotations/instances_val.json'),
    # RefineDet and DSOD trained silently, class 4 became background
    ('vovnet19slim_refinedet192_shapes.py', 'train',
     'model.bbox_head.num_classes=3', 'VOC2007/ImageSets/Main/trainval.txt'),
    ('vovnet27slim_dsod160_shapes.py', 'test',
     'model.bbox_head.num_classes=5', 'VOC2007/ImageSets/Main/test.txt'),
])
def test_num_classes_must_match_the_dataset(tmp_path, shapes_root, config,
                                            tool, option, ann_file):
    path = (tiny_config(tmp_path, shapes_root, 2) if config == 'demo' else
            voc_shapes_config(tmp_path, config, shapes_root))
    argv = [path] + ([str(tmp_path / 'unused.pth')] if tool == 'test'
                     else []) + ['--work-dir', str(tmp_path / 'w'),
                                 '--cfg-options', option]
    (tmp_path / 'unused.pth').write_bytes(b'')
    main = train.main if tool == 'train' else test_tool.main
    with pytest.raises(ModelConfigError) as err:
        main(argv)
    key = option.split('=')[0]
    message = str(err.value)
    assert message.startswith(f'{option}, but the ')
    assert f"4 classes in '{osp.join(shapes_root, ann_file)}'" in message
    assert f'--cfg-options {key}=4' in message
    assert not (tmp_path / 'w').exists()
