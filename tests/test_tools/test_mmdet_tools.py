"""mmdet's own analysis tools work on vovdet configs: browse_dataset.py,
analyze_logs.py plot_curve and confusion_matrix.py, run as users run them
(the scripts shipped in the mmdet wheel, in subprocesses)."""
import glob
import os.path as osp
import pickle

import mmdet

from tests.helpers import ROOT, run_tool, tiny_config

MMDET_TOOLS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                       'analysis_tools')


def test_browse_dataset_draws_the_training_images(tmp_path, shapes_root):
    # the visualizer needs a name outside a runner (default_runtime.py)
    config = tiny_config(tmp_path, shapes_root, 2)
    out = tmp_path / 'browse'
    run_tool([osp.join(MMDET_TOOLS, 'browse_dataset.py'), config,
              '--output-dir', str(out), '--not-show'])
    assert len(glob.glob(str(out / '*.jpg'))) == 8  # shapes_root: 8 train


def test_analyze_logs_and_confusion_matrix_after_train_and_test(
        tmp_path, tiny_run):
    config = tiny_run.config  # trained by tools/train.py (conftest.py)
    [log] = glob.glob(osp.join(tiny_run.work_dir, '*', 'vis_data',
                               'scalars.json'))
    curve = tmp_path / 'loss.png'
    run_tool([osp.join(MMDET_TOOLS, 'analyze_logs.py'), 'plot_curve', log,
              '--keys', 'loss', 'loss_cls', '--out', str(curve)])
    assert curve.read_bytes()[:4] == b'\x89PNG'

    results = str(tmp_path / 'results.pkl')
    run_tool(['tools/test.py', config, tiny_run.checkpoint,
              '--work-dir', str(tmp_path / 'work'), '--out', results])
    with open(results, 'rb') as f:
        assert len(pickle.load(f)) == 4  # shapes_root: 4 val images
    out = tmp_path / 'confusion'
    run_tool([osp.join(MMDET_TOOLS, 'confusion_matrix.py'), config, results,
              str(out), '--score-thr', '0'], cwd=ROOT)
    assert (out / 'confusion_matrix.png').is_file()
