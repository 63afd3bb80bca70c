"""The entry points leave no process group behind (a live gloo group can
abort the interpreter at exit, after a distributed run has finished)."""
import pytest
import torch.distributed as dist

from vovdet.apis.common import run_cli
from vovdet.utils import DatasetNotFoundError, init_cpu_distributed


@pytest.fixture
def single_rank_group(monkeypatch, free_port):
    """A real one-process gloo group, as ``--launcher pytorch`` makes."""
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(free_port)).items():
        monkeypatch.setenv(key, value)
    init_cpu_distributed('pytorch')
    assert dist.is_initialized()
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_run_cli_destroys_the_group_after_success(single_rank_group):
    seen = []

    def main():
        seen.append(dist.get_world_size())

    run_cli(main)
    assert seen == [1]
    assert not dist.is_initialized()


@pytest.mark.parametrize('error, raised', [
    (DatasetNotFoundError('no data here'), SystemExit),  # user error
    (RuntimeError('boom'), RuntimeError),                # crash
])
def test_run_cli_destroys_the_group_after_an_error(single_rank_group, error,
                                                   raised):

    def main():
        raise error

    with pytest.raises(raised):
        run_cli(main)
    assert not dist.is_initialized()
