"""How the entry points leave a distributed run: the process group is
destroyed, then the process ends with the run's exit status (a live gloo
group can abort the interpreter at exit, after the run has finished)."""
import os
import subprocess
import sys

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


def test_distributed_success_destroys_the_group_and_ends_with_0(
        single_rank_group):
    seen, ended = [], []

    def main():
        seen.append(dist.get_world_size())

    run_cli(main, end_process=ended.append)
    assert seen == [1]
    assert ended == [0]
    assert not dist.is_initialized()


@pytest.mark.parametrize('error, raised', [
    (DatasetNotFoundError('no data here'), SystemExit),  # user error
    (RuntimeError('boom'), RuntimeError),                # crash
    (SystemExit(3), SystemExit),                         # explicit exit
])
def test_distributed_error_destroys_the_group_and_ends_with_its_status(
        single_rank_group, error, raised, capsys):
    ended = []

    def main():
        raise error

    with pytest.raises(raised):
        run_cli(main, end_process=ended.append)
    assert ended == [3 if isinstance(error, SystemExit) else 1]
    assert not dist.is_initialized()
    err = capsys.readouterr().err
    if isinstance(error, DatasetNotFoundError):
        assert err.strip() == 'error: no data here'
    if isinstance(error, RuntimeError):
        assert 'Traceback' in err and 'RuntimeError: boom' in err


def test_without_a_group_nothing_is_ended():
    ended = []
    run_cli(lambda: None, end_process=ended.append)
    with pytest.raises(SystemExit):
        run_cli(lambda: (_ for _ in ()).throw(DatasetNotFoundError('x')),
                end_process=ended.append)
    assert ended == []


EXIT_PROBE = '''
import atexit, logging, sys
from vovdet.apis.common import run_cli
from vovdet.utils import init_cpu_distributed

log = logging.getLogger('probe')
handler = logging.FileHandler(sys.argv[1])
log.addHandler(handler)
atexit.register(lambda: print('atexit ran', flush=True))


def main():
    init_cpu_distributed('pytorch')
    log.warning('last line of the run')
    print('buffered output', end='')  # no newline, no flush
    if sys.argv[2] == 'fail':
        raise RuntimeError('boom')


run_cli(main)
print('not reached')
'''


@pytest.mark.parametrize('outcome, status', [('ok', 0), ('fail', 1)])
def test_end_distributed_process_runs_atexit_flushes_and_keeps_status(
        tmp_path, free_port, outcome, status):
    script = tmp_path / 'probe.py'
    script.write_text(EXIT_PROBE)
    log = tmp_path / 'run.log'
    proc = subprocess.run(
        [sys.executable, str(script), str(log), outcome],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                 MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port)))
    assert proc.returncode == status, proc.stderr[-3000:]
    assert proc.stdout.startswith('buffered output')
    assert 'atexit ran' in proc.stdout and 'not reached' not in proc.stdout
    assert log.read_text() == 'last line of the run\n'
    assert ('RuntimeError: boom' in proc.stderr) == (outcome == 'fail')
