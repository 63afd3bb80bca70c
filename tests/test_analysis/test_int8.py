"""The INT8 study (tools/analysis/int8_benchmark.py) through its CLI on a
seeded DSOD160 and the tiny shapes data: three variants scored by one loop
and timed, the report's table and JSON round trip."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint

from tests.test_deploy.test_onnx import CONFIGS, build
from vovdet.analysis.int8 import (EAGER, FP32, INT8, format_markdown,
                                  load_int8_study)
from vovdet.analysis.int8 import main as int8_main


def test_int8_study_scores_and_times_three_variants(tmp_path, shapes_root):
    cfg = Config.fromfile(osp.join(CONFIGS, 'vovnet27slim_dsod160_shapes.py'))
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = shapes_root + '/'
    config = str(tmp_path / 'dsod160.py')
    cfg.dump(config)
    ckpt = str(tmp_path / 'dsod.pth')
    save_checkpoint(dict(meta={}, state_dict=build(config, {}).state_dict()),
                    ckpt)
    with pytest.raises(SystemExit, match="DSOD: checkpoint 'no.pth' does"):
        int8_main(['--model', 'DSOD', config, 'no.pth'])
    study = int8_main([
        '--model', 'DSOD160', config, ckpt, '--calib-images', '2',
        '--rounds', '2', '--warmup', '0', '--work-dir', str(tmp_path / 'w'),
        '--out', str(tmp_path / 'out'), '--stem', 'int8'])
    (result, ) = study.models
    assert set(result.metrics) == {EAGER, FP32, INT8}
    # one loop scores all three: PyTorch and the FP32 graph agree
    assert result.metrics[FP32] == pytest.approx(result.metrics[EAGER],
                                                 abs=1e-6)
    assert 'pascal_voc/AP50' in result.metrics[INT8]
    assert all(len(v) == 2 for v in result.latencies_ms.values())
    assert set(result.speed_ups) == {EAGER, INT8}
    assert 'quantized' in result.quantization and result.shape == (160, 160)
    out = tmp_path / 'out'
    assert load_int8_study(str(out / 'int8.json')) == study
    assert (out / 'int8.png').stat().st_size > 0
    table = format_markdown(study)
    assert table == (out / 'int8.md').read_text()
    assert '| DSOD160 (160x160) | AP50 |' in table and 'INT8 change' in table
    assert 'nan' not in table
