"""One training per work dir, and resuming from the work dir's own files.

- :class:`WorkDirLock`: two trainings into one work dir both ran, shared
  one log and overwrote each other's checkpoints. ``tools/train.py`` holds
  this lock while it trains; a second training is refused with the first
  one's pid, host, start time and command. The lock is an ``flock`` on
  ``<work_dir>/.train.lock``, which the kernel releases when its process
  dies, so a killed run never leaves it stuck.
- :func:`find_resume_checkpoint`: what ``--resume`` without a path resumes
  from. ``last_checkpoint`` holds an absolute path, which mmengine took as
  it was: a moved work dir could not resume, a copied one silently resumed
  from the original, and an empty pointer failed with "checkpoint '' does
  not exist".
"""
import fcntl
import glob
import json
import os
import os.path as osp
import socket
import sys
import time
from typing import Optional


class WorkDirBusyError(RuntimeError):
    """Another training holds the work dir."""


class CheckpointNotFoundError(FileNotFoundError):
    """``last_checkpoint`` is empty or names a file that does not exist."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkDirLock:
    """Hold ``work_dir`` for one training (a context manager).

    Args:
        work_dir (str): The work dir; created if missing.

    Raises:
        WorkDirBusyError: On entering, when a live process holds the lock;
            the message names its pid, host, start time and command.
    """

    FILENAME = '.train.lock'

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, self.FILENAME)
        self._fd: Optional[int] = None

    def __enter__(self) -> 'WorkDirLock':
        os.makedirs(self.work_dir, exist_ok=True)
        # A lock file can be unlinked by its holder (release) or by us
        # (orphaned lock) between our open and our flock: retry on a new one.
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                if self._orphaned(holder):
                    # The run that took it is dead but a process it forked
                    # still holds the file: leave that file to it.
                    self._unlink()
                    continue
                raise WorkDirBusyError(self._busy_message(holder)) from None
            if not self._is_current(fd):
                os.close(fd)
                continue
            info = dict(pid=os.getpid(), host=socket.gethostname(),
                        started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                        command=' '.join(sys.argv))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode('utf-8'), 0)
            self._fd = fd
            return self
        raise WorkDirBusyError(
            f"could not take the lock '{self.path}': other processes keep "
            'replacing it; is another training starting in this work dir?')

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        if self._is_current(self._fd):
            self._unlink()
        os.close(self._fd)  # releases the flock
        self._fd = None

    def _is_current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at ``self.path``."""
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 65536, 0).decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            return {}

    @staticmethod
    def _orphaned(holder: dict) -> bool:
        return (holder.get('host') == socket.gethostname()
                and isinstance(holder.get('pid'), int)
                and not _pid_alive(holder['pid']))

    def _busy_message(self, holder: dict) -> str:
        who = (f"pid {holder.get('pid', '?')} on host "
               f"{holder.get('host', '?')}, started "
               f"{holder.get('started', '?')}")
        if holder.get('command'):
            who += f" ({holder['command']})"
        return (f"work dir '{self.work_dir}' is in use by another training: "
                f'{who}. Two trainings in one work dir share its log and '
                "overwrite each other's checkpoints: wait for that run to "
                'finish, stop it, or train into another --work-dir')


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from.

    Reads ``<work_dir>/last_checkpoint``. An absolute path (what mmengine
    and :class:`vovdet.engine.PortableCheckpointHook` write) that points
    into another folder while ``work_dir`` has a file of the same name is
    taken as that file: the work dir was copied or moved. A relative path
    is taken relative to ``work_dir``.

    Args:
        work_dir (str): The training's work dir.

    Returns:
        str or None: The checkpoint, or None when there is no
        ``last_checkpoint`` (nothing saved yet: training starts afresh).

    Raises:
        CheckpointNotFoundError: ``last_checkpoint`` is empty, or names a
            file that does not exist; the message lists the checkpoints the
            work dir has.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer, encoding='utf-8') as f:
        target = f.read().strip()
    if '://' in target:
        return target
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    choose = (f"resume from one by name, e.g. --resume '{found[-1]}' "
              f'(the work dir has {", ".join(map(osp.basename, found))})'
              if found else 'the work dir has no *.pth file; train afresh '
              'without --resume')
    if not target:
        raise CheckpointNotFoundError(
            f"'{pointer}' is empty (a save was interrupted or the file was "
            f'truncated), so it names no checkpoint to resume from: {choose}')
    path = target if osp.isabs(target) else osp.join(work_dir, target)
    local = osp.join(work_dir, osp.basename(target))
    if (osp.isabs(target) and osp.realpath(osp.dirname(target)) !=
            osp.realpath(work_dir) and osp.isfile(local)):
        print(f"[vovdet] '{pointer}' names '{target}' in another folder; "
              f"resuming from this work dir's '{local}'",
              file=sys.stderr, flush=True)
        return local
    if not osp.isfile(path):
        raise CheckpointNotFoundError(
            f"'{pointer}' names '{target}', which does not exist: {choose}")
    return path
