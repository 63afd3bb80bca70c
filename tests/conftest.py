import os
import socket
import sys

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
