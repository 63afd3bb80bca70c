"""The configs ship inside the package with a model index: every config has
one metafile entry; mmdet's DetInferencer finds models by name, mmengine
resolves 'vovdet::' config paths, and openmim's `mim search` lists them,
all through vovdet/.mim."""
import glob
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
from mmdet.apis import DetInferencer
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

import vovdet
from vovdet.analysis.complexity import get_config_complexity
from vovdet.utils.model_index import (PACKAGE_DIR, find_model,
                                      load_model_index, model_index_dir)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_NAMES = sorted(
    osp.basename(p)[:-3] for p in glob.glob(osp.join(ROOT, 'configs', '*.py')))


def test_every_config_has_one_model_index_entry():
    models = load_model_index()
    names = [m['Name'] for m in models]
    assert sorted(names) == CONFIG_NAMES
    for model in models:
        assert model['Config'] == f"configs/{model['Name']}.py"
        assert osp.isfile(osp.join(model_index_dir(), model['Config']))
        assert model['Weights'] is None  # none trained yet
        meta = model['Metadata']
        assert meta['Parameters'] > 0 and meta['FLOPs'] > 0
        assert meta['FLOPs Input'].startswith('3x')
        # a paper figure always comes with its source
        assert ('Results' in model) == ('Paper Metric Source' in meta)


def test_paper_figures_of_the_recipes():
    box_ap = {m['Name']: m['Results'][0]['Metrics']['box AP']
              for m in load_model_index() if 'Results' in m}
    # VoVNet paper Table 5 (Mask R-CNN), Table 4 (RefineDet320, ImageNet
    # backbones), Table 2 (DSOD300 on VOC07+12), DSOD's README
    assert box_ap == {
        'vovnet39_maskrcnn_coco': 41.7, 'vovnet57_maskrcnn_coco': 41.9,
        'resnet50_maskrcnn_coco': 39.5,
        'vovnet39_refinedet320_coco_imagenet': 33.5,
        'vovnet57_refinedet320_coco_imagenet': 33.9,
        'resnet50_refinedet320_coco_imagenet': 30.3,
        'densenet201_refinedet320_coco_imagenet': 32.5,
        'dsod300_voc0712': 77.7, 'densenet67_dsod300_voc0712': 73.6,
        'vovnet27slim_dsod300_voc0712': 74.8}


def test_demo_flops_in_the_index_match_the_counter():
    # every model's parameters are asserted in test_configs.py; the FLOPs
    # of the paper configs in test_refinedet.py and test_dsod.py
    meta = find_model('vovnet19slim_maskrcnn_shapes')['Metadata']
    result = get_config_complexity(
        osp.join(ROOT, 'configs', 'vovnet19slim_maskrcnn_shapes.py'),
        shape=(192, 192), part='detector')
    assert meta['FLOPs Input'] == '3x192x192'
    assert (result.params, result.flops) == (meta['Parameters'],
                                             meta['FLOPs'])


def test_package_links_the_checkout_configs_and_index():
    mim = osp.join(PACKAGE_DIR, '.mim')
    assert osp.samefile(osp.join(mim, 'configs'), osp.join(ROOT, 'configs'))
    assert osp.samefile(osp.join(mim, 'model-index.yml'),
                        osp.join(ROOT, 'model-index.yml'))


def test_det_inferencer_builds_a_model_by_name():
    inferencer = DetInferencer(model='vovnet39_maskrcnn_coco', weights=None,
                               scope='vovdet', device='cpu',
                               show_progress=False)
    assert type(inferencer.model).__name__ == 'MaskRCNN'
    assert inferencer.model.backbone.arch == 'V-39'
    small = DetInferencer(model='vovnet19slim_maskrcnn_shapes',
                          scope='vovdet', device='cpu', show_progress=False)
    result = small(np.full((96, 96, 3), 128, np.uint8))
    assert len(result['predictions']) == 1


def test_user_config_inherits_packaged_bases_and_configs(tmp_path):
    user = tmp_path / 'user.py'
    user.write_text(
        "_base_ = ['vovdet::_base_/models/mask_rcnn_vovnet_fpn_gn.py',\n"
        "          'vovdet::_base_/default_runtime.py']\n"
        'model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n')
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.arch == 'V-39'
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.custom_imports['imports'] == ['vovdet']
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)  # under the scope 'vovdet' it carries
    assert type(model.backbone).__name__ == 'VoVNet'
    # a whole config: mmengine needs a folder in `pkg::folder/file`
    whole = tmp_path / 'whole.py'
    whole.write_text(
        "_base_ = 'vovdet::_base_/../vovnet19slim_maskrcnn_shapes.py'\n"
        'train_cfg = dict(max_iters=10)\n')
    cfg = Config.fromfile(str(whole))
    assert cfg.model.backbone.arch == 'V2-19-slim'
    assert cfg.train_cfg.max_iters == 10


def test_mim_search_lists_the_models():
    from mim.utils import get_installed_path
    assert osp.samefile(get_installed_path('vovdet'), osp.dirname(
        vovdet.__file__)), 'vovdet is not installed from this checkout: ' \
        'pip install -e .'
    proc = subprocess.run(
        [sys.executable, '-m', 'mim', 'search', 'vovdet', '--config',
         'vovnet39_maskrcnn_coco'], capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'config id: vovnet39_maskrcnn_coco' in proc.stdout
    assert 'coco/box_ap' in proc.stdout and '41.7' in proc.stdout
    assert 'parameters           43450736' in proc.stdout


@pytest.mark.parametrize('name', ['vovnet39_maskrcnn_coc', 'refinedet'])
def test_unknown_model_name_lists_close_names(name):
    with pytest.raises(ValueError, match='model index'):
        find_model(name)


def test_model_zoo_tables_agree_with_the_metafiles():
    with open(osp.join(ROOT, 'docs', 'model_zoo.md'), encoding='utf-8') as f:
        rows = re.findall(r'^\| `(\w+)` \| [^|]+ \| ([\d.]+) \| ([\d.]+) \| '
                          r'(\d+x\d+) \| ([^|]+) \|', f.read(), re.M)
    assert len(rows) == len(CONFIG_NAMES)
    for name, params, gflops, size, metric in rows:
        model = find_model(name)
        meta = model['Metadata']
        assert params == f"{meta['Parameters'] / 1e6:.2f}", name
        assert gflops == f"{meta['FLOPs'] / 1e9:.2f}", name
        assert f'3x{size}' == meta['FLOPs Input'], name
        values = [v for r in model.get('Results', [])
                  for v in r['Metrics'].values()]
        assert re.findall(r'\d+\.\d', metric) == [str(v) for v in values]
