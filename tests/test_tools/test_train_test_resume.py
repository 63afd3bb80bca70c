"""The real CLI path: tools/train.py -> tools/test.py -> --resume, and a
two-process CPU DDP run. (Bad input, killed runs and checkpoint safety are
in tests/test_reliability/.)"""
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys

import torch
from mmengine.logging import HistoryBuffer

from tests.helpers import ROOT, logged_iters, run_tool, tiny_config
from vovdet.utils import safe_load_checkpoint

PROBE = '''
import torch
from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class ResumeProbeHook(Hook):
    """Record the state the runner starts training from."""

    def __init__(self, out):
        self.out = out

    def before_train(self, runner):
        loss = runner.message_hub.get_scalar('train/loss')
        torch.save(dict(iter=runner.iter,
                        optimizer=runner.optim_wrapper.state_dict(),
                        loss_type=type(loss).__name__,
                        loss_history=torch.from_numpy(loss.data[0]),
                        schedulers=[s.state_dict()
                                    for s in runner.param_schedulers]),
                   self.out)
'''


def test_train_test_resume_roundtrip(tmp_path, shapes_root, tiny_run):
    # 1) tools/train.py trained 2 iterations -> iter_2.pth (conftest.py)
    ckpt2 = tiny_run.checkpoint
    # it loads (stock weights_only=True: tests/test_reliability) and carries
    # the optimizer, the schedulers, the message hub and the iteration
    state = safe_load_checkpoint(ckpt2)
    assert state['meta']['iter'] == 2 and 'optimizer' in state
    assert isinstance(state['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert logged_iters(tiny_run.work_dir) == [1, 2]

    # 2) test the checkpoint: COCO metrics come back, predictions dumped
    out = str(tmp_path / 'preds.pkl')
    proc = run_tool(['tools/test.py', tiny_run.config, ckpt2, '--work-dir',
                     str(tmp_path / 'test'), '--out', out])
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and 'pred_instances' in preds[0]

    # 3) resume (a copy of the work dir) to 4 iterations: starts at iter 2
    # with the saved optimizer, schedulers and logged history
    work = str(tmp_path / 'work')
    shutil.copytree(tiny_run.work_dir, work)
    probe_dir = tmp_path / 'probe'
    probe_dir.mkdir()
    (probe_dir / 'resume_probe.py').write_text(PROBE)
    probe_out = str(tmp_path / 'probe.pth')
    cfg4 = tiny_config(
        tmp_path, shapes_root, 4,
        extra=dict(
            custom_imports=dict(
                imports=['vovdet', 'resume_probe'],
                allow_failed_imports=False),
            custom_hooks=[dict(type='ResumeProbeHook', out=probe_out)]))
    before = set(os.listdir(work))
    run_tool(['tools/train.py', cfg4, '--work-dir', work, '--resume'],
             env=dict(PYTHONPATH=f'{probe_dir}{os.pathsep}' +
                      os.environ.get('PYTHONPATH', '')))
    probe = torch.load(probe_out, weights_only=False)
    assert probe['iter'] == 2
    saved = state['optimizer']['state']
    assert saved, 'SGD momentum buffers are expected in the checkpoint'
    for key, buf in saved.items():
        torch.testing.assert_close(probe['optimizer']['state'][key]
                                   ['momentum_buffer'], buf['momentum_buffer'])
    assert probe['loss_type'] == 'HistoryBuffer'
    logged, _ = state['message_hub']['log_scalars']['train/loss'].data
    assert probe['loss_history'].tolist() == logged.tolist()
    assert len(logged) == 2
    assert [s['last_step'] for s in probe['schedulers']] == [
        s['last_step'] for s in state['param_schedulers']]
    new_runs = [d for d in set(os.listdir(work)) - before
                if osp.isdir(osp.join(work, d))]
    assert len(new_runs) == 1
    assert logged_iters(osp.join(work, new_runs[0])) == [3, 4]
    assert safe_load_checkpoint(osp.join(work, 'iter_4.pth'))['meta'][
        'iter'] == 4


def run_dist(script, args, port):
    """``tools/<script>`` with two CPU processes; fails with its stderr."""
    proc = subprocess.run(
        ['bash', f'tools/{script}'] + args,
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHON=sys.executable, PORT=str(port),
                 OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def test_two_process_cpu_ddp_trains_and_tests(tmp_path, shapes_root,
                                              free_port):
    work = str(tmp_path / 'ddp')
    cfg = tiny_config(tmp_path, shapes_root, 2)
    log = run_dist('dist_train.sh', [cfg, '2', '--work-dir', work],
                   free_port)
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    assert 'Distributed training: True' in log
    assert "'world_size': 2" in log or 'world_size: 2' in log or \
        'GPU number: 2' in log
    # the processes end with os._exit (vovdet.utils.end_distributed_process)
    # after the logs are flushed: rank 0's log file ends with the final
    # validation
    logs = [osp.join(folder, f) for folder, _, files in os.walk(work)
            for f in files if f.endswith('.log')]
    assert len(logs) == 1
    with open(logs[0]) as f:
        assert 'Iter(val) [1/1]' in f.read().splitlines()[-1]

    # each process tests half of the 4 val images; rank 0 gathers them all
    out = str(tmp_path / 'ddp_preds.pkl')
    log = run_dist('dist_test.sh',
                   [cfg, ckpt, '2', '--work-dir', work, '--out', out],
                   free_port)
    assert 'coco/bbox_mAP' in log
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    with open(osp.join(shapes_root, 'annotations',
                       'instances_val.json')) as f:
        val_ids = sorted(img['id'] for img in json.load(f)['images'])
    assert len(val_ids) == 4
    assert sorted(p['img_id'] for p in preds) == val_ids
