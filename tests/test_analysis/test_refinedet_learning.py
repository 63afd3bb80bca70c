"""The RefineDet learning benchmark: schedule scaling and an end-to-end run
of a couple of iterations on a tiny generated shapes set."""
import math
import os.path as osp

import pytest

from vovdet.analysis.refinedet_learning import (DEFAULT_CONFIG,
                                                learning_config, main)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, DEFAULT_CONFIG)


def test_learning_config_scales_the_schedule_and_skips_validation():
    cfg = learning_config(CONFIG, '/somewhere/shapes', iters=150,
                          batch_size=2)
    assert cfg.train_cfg.max_iters == 150
    warmup, cosine = cfg.param_scheduler
    # 100 warm-up iterations of 1500 -> 10 of 150
    assert (warmup.begin, warmup.end) == (0, 10)
    assert (cosine.begin, cosine.end) == (10, 150)
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    assert cfg.default_hooks.checkpoint.interval == 150
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.dataset.data_root == '/somewhere/shapes/'
    assert cfg.test_dataloader.dataset.data_root == '/somewhere/shapes/'
    with pytest.raises(ValueError, match='iters must be positive'):
        learning_config(CONFIG, '/somewhere/shapes', iters=0)


def test_learning_benchmark_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    data_root = str(tmp_path / 'shapes')
    # the benchmark generates the data set itself; keep it tiny here
    from vovdet.apis import demo
    monkeypatch.setitem(demo.DEMO_DATA, 'num_train', 4)
    monkeypatch.setitem(demo.DEMO_DATA, 'num_val', 2)
    monkeypatch.setitem(demo.DEMO_DATA, 'image_size', 96)
    monkeypatch.setitem(demo.DEMO_DATA, 'max_radius', 30.0)
    result = main(['--data-root', data_root, '--work-dir',
                   str(tmp_path / 'work'), '--iters', '2',
                   '--batch-size', '2'])
    assert osp.isfile(osp.join(data_root, 'VOC2007', 'ImageSets', 'Main',
                               'test.txt'))
    assert result['iters'] == 2 and result['batch_size'] == 2
    assert set(result['losses']) == {'loss', 'loss_arm_cls', 'loss_arm_bbox',
                                     'loss_odm_cls', 'loss_odm_bbox'}
    for first, last in result['losses'].values():
        assert math.isfinite(first) and math.isfinite(last)
    for key in ('ap50_11points', 'ap50_area'):
        assert 0 <= result[key] <= 100
    assert osp.isfile(osp.join(str(tmp_path / 'work'), 'iter_2.pth'))
    table = capsys.readouterr().out
    assert 'vovnet19slim_refinedet192_shapes.py | 2 x 2 |' in table
    assert 'loss_odm_cls' in table
