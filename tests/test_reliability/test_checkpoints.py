"""Checkpoints: malicious, truncated, empty or foreign files are refused
with a clear error; our own load with a stock ``torch.load(weights_only=
True)`` in a process without vovdet; ``last_checkpoint`` moves with the
work dir. (Killed runs, the umask and stale temporary files:
test_training_runs.py.)"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

from tests.helpers import ROOT, run_tool, tiny_config
from vovdet.apis import train
from vovdet.engine import CheckpointMismatchError
from vovdet.utils import (CheckpointNotFoundError, UnsafeCheckpointError,
                          find_resume_checkpoint, from_plain,
                          safe_load_checkpoint)


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
    assert proc.returncode == 1
    assert 'IndexError' not in proc.stderr and 'Traceback' not in proc.stderr
    assert 'empty.pth' in proc.stderr and 'the file is empty' in proc.stderr


@pytest.fixture(scope='module')
def old_style_checkpoint(tmp_path_factory, tiny_run):
    """The shared run's checkpoint as mmengine's CheckpointHook wrote it
    before: ``HistoryBuffer`` objects, numpy arrays and scalars pickled."""
    path = str(tmp_path_factory.mktemp('old') / 'old_style.pth')
    torch.save(from_plain(torch.load(tiny_run.checkpoint, weights_only=True)),
               path)
    return path


STOCK_LOAD = '''
import json, pickle, sys
import torch

def kinds(obj):
    if isinstance(obj, dict):
        return {type(obj).__name__}.union(
            *(kinds(k) | kinds(v) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__}.union(*(kinds(v) for v in obj))
    return {type(obj).__name__}

new, old = sys.argv[1:]
checkpoint = torch.load(new, weights_only=True)
try:
    torch.load(old, weights_only=True)
    old_loads = True
except pickle.UnpicklingError:
    old_loads = False
print(json.dumps(dict(
    keys=sorted(checkpoint), kinds=sorted(kinds(checkpoint)),
    iter=checkpoint['meta']['iter'], old_loads=old_loads,
    imported=sorted(m for m in sys.modules
                    if m.split('.')[0] in ('vovdet', 'mmengine', 'mmdet')))))
'''


def test_checkpoints_load_with_stock_torch_load_without_vovdet(
        tiny_run, old_style_checkpoint):
    # a plain torch.load (torch's default weights_only=True) refused them
    # with "Unsupported global: mmengine...HistoryBuffer"
    proc = subprocess.run(
        [sys.executable, '-c', STOCK_LOAD, tiny_run.checkpoint,
         old_style_checkpoint], capture_output=True, text=True, timeout=120,
        cwd='/')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result['imported'] == []
    assert result['keys'] == ['message_hub', 'meta', 'optimizer',
                              'param_schedulers', 'state_dict']
    assert result['iter'] == 2
    assert set(result['kinds']) <= {
        'Tensor', 'dict', 'OrderedDict', 'list', 'tuple', 'str', 'int',
        'float', 'bool', 'NoneType'}
    # the same content pickled the old way is what stock torch refused
    assert result['old_loads'] is False


def test_old_style_checkpoints_still_load_through_the_allow_list(
        tiny_run, old_style_checkpoint):
    old = safe_load_checkpoint(old_style_checkpoint)
    new = safe_load_checkpoint(tiny_run.checkpoint)
    for checkpoint in (old, new):
        buffer = checkpoint['message_hub']['log_scalars']['train/loss']
        assert isinstance(buffer, HistoryBuffer)
    assert [b.data[0].tolist() for b in (
        old['message_hub']['log_scalars']['train/loss'],
        new['message_hub']['log_scalars']['train/loss'])] == [
            new['message_hub']['log_scalars']['train/loss'].data[0].tolist()
        ] * 2
    assert old['param_schedulers'] == new['param_schedulers']
    assert old['meta'] == new['meta']


def test_last_checkpoint_is_written_atomically_as_mmengine_reads_it(
        tiny_run):
    # written through a temporary file renamed over it: none is left
    assert not [n for n in os.listdir(tiny_run.work_dir) if n.endswith(
        '.tmp')]
    # an absolute path, so mmengine's own auto-resume still finds it
    from mmengine.runner import find_latest_checkpoint
    assert find_latest_checkpoint(tiny_run.work_dir) == tiny_run.checkpoint
    assert os.path.isabs(tiny_run.checkpoint)


def make_work_dir(folder, pointer):
    """A work dir holding iter_2.pth and a last_checkpoint of ``pointer``."""
    folder.mkdir(parents=True)
    (folder / 'iter_2.pth').write_bytes(b'weights')
    (folder / 'last_checkpoint').write_text(pointer)
    return str(folder)


def test_resume_finds_the_work_dirs_own_checkpoint(tmp_path):
    # a relative path is taken relative to the work dir
    moved = make_work_dir(tmp_path / 'relative', 'iter_2.pth')
    assert find_resume_checkpoint(moved) == os.path.join(moved, 'iter_2.pth')
    # absolute (what mmengine and PortableCheckpointHook write) into a
    # folder that is gone: the dir was moved
    gone = make_work_dir(tmp_path / 'moved_old',
                         str(tmp_path / 'gone' / 'iter_2.pth'))
    assert find_resume_checkpoint(gone) == os.path.join(gone, 'iter_2.pth')
    # absolute into the original, which still exists: a copy resumes from
    # its own file, not from the original's
    original = make_work_dir(tmp_path / 'original', 'iter_2.pth')
    copy = str(tmp_path / 'copy')
    shutil.copytree(original, copy)
    with open(os.path.join(copy, 'last_checkpoint'), 'w') as f:
        f.write(os.path.join(original, 'iter_2.pth'))
    assert find_resume_checkpoint(copy) == os.path.join(copy, 'iter_2.pth')
    # nothing saved yet: training starts afresh
    assert find_resume_checkpoint(str(tmp_path / 'new')) is None
    # a pointer to a file that is not there
    missing = make_work_dir(tmp_path / 'missing', 'iter_8.pth')
    with pytest.raises(CheckpointNotFoundError,
                       match="names 'iter_8.pth', which does not exist"):
        find_resume_checkpoint(missing)


def test_empty_last_checkpoint_is_a_clear_error(tmp_path, tiny_run):
    # mmengine failed with "checkpoint '' does not exist"
    work = make_work_dir(tmp_path / 'work', '')
    with pytest.raises(CheckpointNotFoundError) as err:
        train.main([tiny_run.config, '--work-dir', work, '--resume'])
    message = str(err.value)
    assert 'last_checkpoint' in message and 'is empty' in message
    assert f"--resume '{os.path.join(work, 'iter_2.pth')}'" in message


@pytest.fixture(scope='module')
def resnet18_checkpoint(tmp_path_factory):
    """Weights of another architecture: the demo's Mask R-CNN with mmdet's
    ResNet-18 (configs/resnet18_maskrcnn_shapes.py), untrained."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(os.path.join(ROOT, 'configs',
                                       'resnet18_maskrcnn_shapes.py'))
    path = str(tmp_path_factory.mktemp('resnet18') / 'resnet18.pth')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def test_test_tool_refuses_a_checkpoint_of_another_architecture(
        tmp_path, tiny_run, resnet18_checkpoint):
    # tools/test.py printed metrics and exited 0 after dozens of buried
    # "size mismatch" warnings
    proc = run_tool(['tools/test.py', tiny_run.config, resnet18_checkpoint,
                     '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'coco/bbox_mAP' not in proc.stdout
    [line] = [line for line in proc.stderr.splitlines()
              if line.startswith('error:')]
    assert f"checkpoint '{resnet18_checkpoint}' does not fit" in line
    assert 'have another shape in the checkpoint' in line
    assert 'neck.lateral_convs.0.conv.weight (128, 64, 1, 1) vs (128, 112, ' \
        '1, 1)' in line
    assert 'are missing from the checkpoint (backbone.' in line
    assert 'checkpoint tensors are not in the model (backbone.conv1' in line
    assert 'size mismatch' not in proc.stdout + proc.stderr


def test_load_from_of_another_backbone_is_refused(tmp_path, tiny_run,
                                                  resnet18_checkpoint):
    # load_from trained on from a model whose backbone loaded nothing
    with pytest.raises(CheckpointMismatchError) as err:
        train.main([tiny_run.config, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', f'load_from={resnet18_checkpoint}'])
    assert 'fits none of the' in str(err.value)
    assert 'backbone tensors' in str(err.value)
    assert not (tmp_path / 'w' / 'iter_2.pth').exists()
