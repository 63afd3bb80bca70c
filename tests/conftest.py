import os
import socket
import sys
from types import SimpleNamespace

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, 'configs')

# Keep the suite predictable on small CPU machines; VOVDET_TEST_THREADS=1
# avoids thread oversubscription when other jobs share the cores.
torch.set_num_threads(
    int(os.environ.get('VOVDET_TEST_THREADS', min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on, for a process
    group's rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """A tiny shapes dataset (COCO + VOC) shared by the tests."""
    from vovdet.datasets import generate_shapes_dataset
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes_dataset(root, num_train=8, num_val=4, image_size=96,
                            max_objects=3, min_radius=10, max_radius=30,
                            seed=0)
    return root


sys.path.insert(0, ROOT)


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory, shapes_root):
    """One real ``tools/train.py`` run of the demo config shrunk to two
    iterations (batch 2, 96 px, checkpoint and validation at iteration 2),
    shared by the tests that need a trained work dir or checkpoint. Tests
    that change the work dir copy it first.

    Returns:
        SimpleNamespace: ``config``, ``work_dir``, ``checkpoint``
        (``iter_2.pth``) and ``folder`` (for further configs).
    """
    from tests.helpers import run_tool, tiny_config
    folder = tmp_path_factory.mktemp('tiny_run')
    config = tiny_config(folder, shapes_root, 2)
    work_dir = str(folder / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work_dir])
    return SimpleNamespace(config=config, work_dir=work_dir,
                           checkpoint=os.path.join(work_dir, 'iter_2.pth'),
                           folder=folder)
