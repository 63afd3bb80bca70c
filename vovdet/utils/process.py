"""Data-loader workers die with the trainer that forked them.

A trainer killed with SIGKILL left its data-loader worker alive under PID 1
for minutes: a worker only checks for its parent while waiting for work,
and one blocked writing a batch nobody reads waits forever. On Linux,
:func:`children_die_with_parent` asks the kernel to SIGKILL every process
the trainer forks (``PR_SET_PDEATHSIG``) the moment the trainer dies.
"""
import ctypes
import functools
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.lru_cache(maxsize=None)
def children_die_with_parent() -> bool:
    """Make every process this one forks from now on (data-loader workers
    with the ``fork`` start method, the configs' ``mp_start_method``) get
    SIGKILL when this process dies. Idempotent.

    The kernel ties the signal to the thread that forks, so a child forked
    by a thread that ends before the process is killed with it; PyTorch
    starts its workers from the thread that iterates the loader, the
    main thread in mmengine's loops.

    Returns:
        bool: True on Linux, where it is installed; False elsewhere (there
        PyTorch's own check, every 5 s while a worker waits for work, is
        all there is).
    """
    if not sys.platform.startswith('linux'):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    forking = []  # the pid of the process about to fork, per process

    def before_fork():
        forking[:] = [os.getpid()]

    def in_child():
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # the parent may have died before prctl took effect
        if forking and os.getppid() != forking[0]:
            os._exit(1)

    os.register_at_fork(before=before_fork, after_in_child=in_child)
    return True
