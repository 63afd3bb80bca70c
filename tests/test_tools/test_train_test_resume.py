"""The real CLI path: tools/train.py -> tools/test.py -> --resume, DDP,
checkpoint safety and clear errors for bad input."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from vovdet.analysis.learning import logged_losses
from vovdet.utils import UnsafeCheckpointError, safe_load_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'vovnet19slim_maskrcnn_shapes.py')


def tiny_config(tmp_path, data_root, max_iters, extra=None):
    """The demo config shrunk to a few iterations on 96 px images."""
    cfg = Config.fromfile(DEMO)
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=2)
    ]
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
        for t in loader.dataset.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = (96, 96)
    ann = osp.join(data_root, 'annotations', 'instances_val.json')
    cfg.val_evaluator.ann_file = ann
    cfg.test_evaluator.ann_file = ann
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.log_processor.window_size = 1
    # an untrained model scores every class below the default 0.05
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.merge_from_dict(extra or {})
    path = str(tmp_path / f'tiny_{max_iters}.py')
    cfg.dump(path)
    return path


def run_tool(args, cwd=ROOT, env=None, check=True):
    proc = subprocess.run(
        [sys.executable] + args, cwd=cwd, capture_output=True, text=True,
        env=dict(os.environ, **(env or {})), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
            f'{proc.stderr[-5000:]}')
    return proc


def logged_iters(work_dir):
    """Iterations at which a training loss was logged under work_dir."""
    return [it for it, _ in logged_losses(work_dir)['loss']]


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
        torch.save(dict(iter=runner.iter,
                        optimizer=runner.optim_wrapper.state_dict()),
                   self.out)
'''


def test_train_test_resume_roundtrip(tmp_path, shapes_root):
    work = str(tmp_path / 'work')
    # 1) train 2 iterations -> iter_2.pth
    cfg2 = tiny_config(tmp_path, shapes_root, 2)
    run_tool(['tools/train.py', cfg2, '--work-dir', work])
    ckpt2 = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt2)
    # written checkpoints load under weights_only=True (no globals needed
    # beyond the allow-list), and carry optimizer and iteration state
    state = safe_load_checkpoint(ckpt2)
    assert state['meta']['iter'] == 2 and 'optimizer' in state
    assert logged_iters(work) == [1, 2]

    # 2) test the checkpoint: COCO metrics come back, predictions dumped
    out = str(tmp_path / 'preds.pkl')
    proc = run_tool(['tools/test.py', cfg2, ckpt2, '--work-dir', work,
                     '--out', out])
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and 'pred_instances' in preds[0]

    # 3) resume to 4 iterations: starts at iter 2 with the saved optimizer
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
    new_runs = [d for d in set(os.listdir(work)) - before
                if osp.isdir(osp.join(work, d))]
    assert len(new_runs) == 1
    assert logged_iters(osp.join(work, new_runs[0])) == [3, 4]
    assert safe_load_checkpoint(osp.join(work, 'iter_4.pth'))['meta'][
        'iter'] == 4


class Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_checkpoint_with_arbitrary_object_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=dict(payload=Evil())), path)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load_checkpoint(path)
    assert 'evil.pth' in str(err.value) and 'system' in str(err.value)
    # mmengine's own loader (used by load_from/resume) goes through it too
    from mmengine.runner import CheckpointLoader
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(path)


class AttributeEscape:
    """Reaches past the allow-listed HistoryBuffer statistics."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = str(tmp_path / 'escape.pth')
    torch.save(dict(meta=dict(x=AttributeEscape())), path)
    with pytest.raises(UnsafeCheckpointError, match='escape.pth'):
        safe_load_checkpoint(path)


def test_test_tool_refuses_unsafe_checkpoint(tmp_path, shapes_root):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=dict(payload=Evil())), path)
    cfg = tiny_config(tmp_path, shapes_root, 2)
    proc = run_tool(['tools/test.py', cfg, path, '--work-dir',
                     str(tmp_path / 'w')], check=False)
    assert proc.returncode == 1
    assert 'refusing to load' in proc.stderr and 'pwned' not in proc.stdout


def test_truncated_checkpoint_is_reported(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save(dict(state_dict={'w': torch.ones(1000)}), good)
    with open(good, 'rb') as f:
        data = f.read()
    bad = str(tmp_path / 'bad.pth')
    with open(bad, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match='bad.pth'):
        safe_load_checkpoint(bad)


def test_empty_checkpoint_is_reported_through_tools_test(tmp_path,
                                                         shapes_root):
    # an empty .pth made the error handler itself crash with IndexError
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(RuntimeError, match='the file is empty'):
        safe_load_checkpoint(str(empty))
    proc = run_tool(['tools/test.py', tiny_config(tmp_path, shapes_root, 2),
                     str(empty), '--work-dir', str(tmp_path / 'w')],
                    check=False)
    assert proc.returncode != 0
    assert 'IndexError' not in proc.stderr
    assert 'empty.pth' in proc.stderr and 'the file is empty' in proc.stderr


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
    import shutil
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
    import shutil
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
        first = json.load(f)['images'][0]['file_name']
    with open(osp.join(root, first), 'wb') as f:
        f.write(b'this is not a jpeg')
    from mmdet.registry import TRANSFORMS
    import vovdet  # noqa: F401
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


def test_cfg_option_without_equals_is_named():
    # mmengine's DictAction raised a bare "not enough values to unpack"
    proc = run_tool(['tools/train.py', DEMO, '--cfg-options',
                     'train_cfg.max_iters=2', 'train_cfg.val_interval'],
                    check=False)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
    assert ("--cfg-options entry 'train_cfg.val_interval' has no '='"
            in proc.stderr)


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', [DEMO, '0']),
    ('dist_test.sh', [DEMO, 'x.pth', 'two']),
])
def test_dist_scripts_refuse_a_bad_process_count(script, args):
    # torchrun with 0 processes failed on a bare AssertionError
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script)] + args,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'NPROC must be a positive number of processes' in proc.stderr
    assert f"got '{args[-1]}'" in proc.stderr


def test_num_workers_zero_drops_persistent_workers(tmp_path, shapes_root):
    # the demo's loaders have persistent_workers=True; num_workers=0 made
    # torch's DataLoader raise without naming the loader or the key
    cfg = tiny_config(tmp_path, shapes_root, 1, extra={
        'train_dataloader.persistent_workers': True,
        'val_dataloader.persistent_workers': True})
    proc = run_tool(['tools/train.py', cfg, '--work-dir',
                     str(tmp_path / 'w'), '--cfg-options',
                     'train_dataloader.num_workers=0'])
    assert ('train_dataloader.persistent_workers set to False'
            in proc.stderr)
    assert 'val_dataloader.persistent_workers set to False' in proc.stderr
    assert (tmp_path / 'w' / 'iter_1.pth').is_file()


def test_config_syntax_error_names_the_file_and_line(tmp_path):
    # mmengine's own SyntaxError pointed at File "<unknown>"
    bad = tmp_path / 'bad_config.py'
    bad.write_text(f"_base_ = '{DEMO}'\n"
                   "model = dict(backbone=dict(arch='V2-19-slim'\n")
    proc = run_tool(['tools/train.py', str(bad)], check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr and '<unknown>' not in proc.stderr
    assert f'config file {bad}, line 2' in proc.stderr
    assert "'(' was never closed" in proc.stderr


def test_non_finite_loss_stops_training_before_a_checkpoint(tmp_path,
                                                            shapes_root):
    # lr 1e30 trained on with exit 0 and wrote all-NaN checkpoints
    good = tiny_config(tmp_path, shapes_root, 2)
    work = tmp_path / 'w'
    run_tool(['tools/train.py', good, '--work-dir', str(work)])
    saved = (work / 'iter_2.pth').read_bytes()
    bad = tiny_config(tmp_path, shapes_root, 4,
                      extra={'optim_wrapper.optimizer.lr': 1e30})
    proc = run_tool(['tools/train.py', bad, '--work-dir', str(work)],
                    check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'non-finite training loss at iteration' in proc.stderr
    assert 'loss_rpn_cls=' in proc.stderr and 'loss_mask=' in proc.stderr
    assert 'optim_wrapper.optimizer.lr' in proc.stderr
    # the good run's checkpoint is untouched, no broken one was written
    assert (work / 'iter_2.pth').read_bytes() == saved
    assert not (work / 'iter_4.pth').exists()


def test_finite_loss_hook_refuses_a_non_finite_checkpoint():
    from types import SimpleNamespace

    from vovdet.engine import FiniteLossHook, NonFiniteLossError
    hook = FiniteLossHook()
    runner = SimpleNamespace(iter=7)
    hook.before_save_checkpoint(
        runner, dict(state_dict={'w': torch.ones(2)}))
    with pytest.raises(NonFiniteLossError, match='backbone.w'):
        hook.before_save_checkpoint(
            runner,
            dict(state_dict={'backbone.w': torch.tensor([1., float('nan')])}))
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.)))
    with pytest.raises(NonFiniteLossError, match='iteration 8: loss=inf'):
        hook.after_train_iter(runner, 0,
                              outputs=dict(loss=torch.tensor(float('inf'))))


@pytest.mark.parametrize('damage,message', [
    (lambda xml: xml.replace('<xmin>', '<xmin>1O', 1),
     "<xmin> is '1O"),
    (lambda xml: xml[:len(xml) // 2], 'is not valid XML'),
])
def test_voc_xml_errors_name_the_file(tmp_path, shapes_root, damage,
                                      message):
    import glob
    import shutil
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    xml = sorted(glob.glob(osp.join(root, 'VOC2007', 'Annotations',
                                    '*.xml')))[0]
    with open(xml) as f:
        text = f.read()
    with open(xml, 'w') as f:
        f.write(damage(text))
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'vovnet19slim_refinedet192_shapes.py'))
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = root + '/'
    path = str(tmp_path / 'voc.py')
    cfg.dump(path)
    proc = run_tool(['tools/train.py', path, '--work-dir',
                     str(tmp_path / 'w')], check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert osp.basename(xml) in proc.stderr and message in proc.stderr
