import os

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend
from mmengine.runner.checkpoint import save_checkpoint

import vovdet  # noqa: F401
from vovdet.utils import AtomicLocalBackend, atomic_write, safe_load_checkpoint


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / 'a.bin'
    atomic_write(b'old', path)
    atomic_write(b'new content', path)
    assert path.read_bytes() == b'new content'
    assert os.listdir(tmp_path) == ['a.bin']


def test_failed_write_keeps_last_good_file(tmp_path, monkeypatch):
    path = tmp_path / 'epoch_1.pth'
    save_checkpoint(dict(state_dict={'w': torch.ones(3)}), str(path),
                    backend_args=dict(backend='atomic_local'))

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(OSError, match='No space'):
        save_checkpoint(dict(state_dict={'w': torch.zeros(3)}), str(path),
                        backend_args=dict(backend='atomic_local'))
    monkeypatch.undo()
    # the previous checkpoint is intact and no temporary file is left behind
    assert os.listdir(tmp_path) == ['epoch_1.pth']
    ckpt = safe_load_checkpoint(str(path))
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(3))


def test_runtime_config_saves_checkpoints_atomically():
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    cfg = Config.fromfile(
        os.path.join(root, 'configs', '_base_', 'default_runtime.py'))
    backend_args = cfg.default_hooks.checkpoint.backend_args
    assert isinstance(get_file_backend('x.pth', backend_args=backend_args),
                      AtomicLocalBackend)
