"""Runs that go wrong: a diverging loss, two trainings into one work dir, a
trainer killed with SIGKILL (its data-loader worker, its lock, a save it
left half-written), a partly fitting load_from. Nothing is lost and
nothing fails silently."""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import ROOT, logged_iters, run_tool, tiny_config
from vovdet.apis import train
from vovdet.utils import WorkDirBusyError, WorkDirLock


def test_non_finite_loss_stops_training_before_a_checkpoint(
        tmp_path, shapes_root, tiny_run):
    # lr 1e30 trained on with exit 0 and wrote all-NaN checkpoints
    work = tmp_path / 'w'
    shutil.copytree(tiny_run.work_dir, work)
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


def _stat(pid):
    """``(state, ppid)`` of a process from /proc, None when it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rsplit(')', 1)[1].split()[:2]
    return state, int(ppid)


def _cmdline(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid):
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != 'Z'


def forked_child(pid, timeout):
    """The pid of a process ``pid`` forked (same command line: a
    data-loader worker), waiting up to ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline and alive(pid):
        for path in glob.glob('/proc/[0-9]*/stat'):
            child = int(path.split('/')[2])
            stat = _stat(child)
            if (stat and stat[1] == pid and stat[0] != 'Z'
                    and _cmdline(child) == _cmdline(pid)):
                return child
        time.sleep(0.2)
    raise AssertionError(f'process {pid} forked no worker in {timeout} s')


STALE = '.iter_2.pth.a1b2c3d4.tmp'


@pytest.fixture(scope='module')
def killed_run(tmp_path_factory, tiny_run, shapes_root):
    """A copy of the shared work dir, as if moved (its last_checkpoint holds
    an absolute path into a folder that is gone), then:

    1. trainer A trains into it with a persistent data-loader worker and a
       load_from that fits in part;
    2. a second training into the same work dir is started (in-process)
       while A runs;
    3. A is killed with SIGKILL, the time until its worker is gone is
       measured, and a half-written checkpoint is left as a killed save
       leaves it;
    4. trainer C resumes in the work dir (``--resume``, umask 002).
    """
    folder = tmp_path_factory.mktemp('killed_run')
    work = folder / 'work'
    shutil.copytree(tiny_run.work_dir, work)
    (work / 'last_checkpoint').write_text(
        str(folder / 'moved_away' / 'iter_2.pth'))

    state = torch.load(tiny_run.checkpoint, weights_only=True)['state_dict']
    partial = {key: value for key, value in state.items()
               if not key.startswith('roi_head.mask_head.')}
    partial['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(9, 256)
    partial['extra.weight'] = torch.zeros(1)
    partial_path = str(folder / 'partial.pth')
    torch.save(dict(state_dict=partial), partial_path)

    long_run = tiny_config(folder, shapes_root, 1000, name='long.py', extra={
        'train_dataloader.num_workers': 1,
        'train_dataloader.persistent_workers': True,
        'default_hooks.checkpoint.interval': 1000,
        'load_from': partial_path})
    a_log = folder / 'a.log'
    with open(a_log, 'w') as log:
        a = subprocess.Popen(
            [sys.executable, 'tools/train.py', long_run, '--work-dir',
             str(work)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        worker = forked_child(a.pid, timeout=300)
        # the loop forks its worker before it loads load_from
        deadline = time.time() + 120
        while ('fits the model only in part' not in a_log.read_text()
               and time.time() < deadline and a.poll() is None):
            time.sleep(0.2)
        runs_before = sorted(p.name for p in work.iterdir() if p.is_dir())
        with pytest.raises(WorkDirBusyError) as busy:
            train.main([tiny_run.config, '--work-dir', str(work)])
        runs_after = sorted(p.name for p in work.iterdir() if p.is_dir())
        lock_left = (work / WorkDirLock.FILENAME).read_text()
        os.kill(a.pid, signal.SIGKILL)
        killed = time.time()
        a.wait()
        while alive(worker) and time.time() - killed < 30:
            time.sleep(0.05)
        worker_gone_s = time.time() - killed
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    (work / STALE).write_bytes(b'half a checkpoint')

    resume = tiny_config(folder, shapes_root, 4, name='resume.py',
                         extra={'train_cfg.val_interval': 100})
    c = run_tool(['tools/train.py', resume, '--work-dir', str(work),
                  '--resume'], check=False, umask=0o002)
    return SimpleNamespace(
        work=work, a=a, a_log=a_log.read_text(), busy=str(busy.value),
        runs_before=runs_before, runs_after=runs_after, lock_left=lock_left,
        worker=worker, worker_gone_s=worker_gone_s, c=c)


def test_second_training_into_a_busy_work_dir_is_refused(killed_run):
    # both ran, shared one log and overwrote each other's checkpoints
    assert (f'is in use by another training: pid {killed_run.a.pid} on '
            f'host {socket.gethostname()}, started ') in killed_run.busy
    assert 'tools/train.py' in killed_run.busy
    assert 'train into another --work-dir' in killed_run.busy
    # the refused run touched nothing: no log folder of its own
    assert killed_run.runs_after == killed_run.runs_before


def test_killed_trainer_takes_its_data_loader_worker_with_it(killed_run):
    # the worker stayed alive under PID 1 for minutes
    assert not alive(killed_run.worker)
    assert killed_run.worker_gone_s < 5


def test_lock_of_a_killed_run_does_not_block_and_a_moved_work_dir_resumes(
        killed_run):
    assert f'"pid": {killed_run.a.pid}' in killed_run.lock_left
    c = killed_run.c
    assert c.returncode == 0, c.stderr[-3000:]
    assert "resuming from this work dir's" in c.stderr
    work = killed_run.work
    [resumed] = sorted(set(p.name for p in work.iterdir() if p.is_dir()) -
                       set(killed_run.runs_after))
    assert logged_iters(str(work / resumed)) == [3, 4]
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')
    assert not (work / WorkDirLock.FILENAME).exists()  # released


def test_stale_temp_files_are_removed_at_start(killed_run):
    # a kill -9 during a save left the hidden temporary file forever
    assert not (killed_run.work / STALE).exists()
    assert (f'removed 1 temporary file(s) a killed save left behind: '
            f'{STALE}') in killed_run.c.stdout


def test_checkpoints_honour_the_umask(killed_run, tiny_run):
    # mkstemp wrote them 0600 whatever the umask
    for name in ('iter_4.pth', 'last_checkpoint'):
        assert (killed_run.work / name).stat().st_mode & 0o777 == 0o664
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tiny_run.checkpoint).st_mode & 0o777 == 0o666 & ~umask


def test_load_from_that_fits_in_part_warns_in_one_line(killed_run):
    # mmengine listed every missing key and size mismatch, and trained on
    [line] = [line for line in killed_run.a_log.splitlines()
              if 'fits the model only in part' in line]
    assert 'the rest keeps its initialisation' in line
    assert ('1 have another shape in the checkpoint (checkpoint vs model: '
            'roi_head.bbox_head.fc_cls.weight (9, 256) vs (5, 256))') in line
    assert 'are missing from the checkpoint (roi_head.mask_head.' in line
    assert '1 checkpoint tensors are not in the model (extra.weight)' in line
    assert 'do not match exactly' not in killed_run.a_log
    assert 'size mismatch' not in killed_run.a_log


ORPHAN_HOLDER = '''
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location('work_dir', sys.argv[1])
work_dir = importlib.util.module_from_spec(spec)
spec.loader.exec_module(work_dir)
work_dir.WorkDirLock(sys.argv[2]).__enter__()
child = os.fork()
if child == 0:  # inherits the locked file, outlives its parent
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os._exit(0)  # dies holding the lock, as a killed trainer would
'''


def test_lock_held_only_by_a_dead_runs_child_does_not_block(tmp_path):
    import vovdet.utils.work_dir as module
    work = str(tmp_path / 'w')
    proc = subprocess.run(
        [sys.executable, '-c', ORPHAN_HOLDER, module.__file__, work],
        capture_output=True, text=True, timeout=60)
    orphan = int(proc.stdout)
    try:
        assert alive(orphan)
        with WorkDirLock(work) as lock:
            assert f'"pid": {os.getpid()}' in open(lock.path).read()
    finally:
        os.kill(orphan, signal.SIGKILL)
