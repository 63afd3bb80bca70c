"""An atomic local file backend for checkpoints.

mmengine writes checkpoints with ``open(path, 'wb').write(...)``: a run
killed (or a disk filling up) in the middle of that write leaves a truncated
file under the checkpoint's final name. :class:`AtomicLocalBackend` writes
to a temporary file in the same folder, fsyncs it and renames it over the
target, so a checkpoint file is either the old complete one or the new
complete one. The configs select it with
``PortableCheckpointHook(backend_args=dict(backend='atomic_local'))``.

A run killed during such a write leaves its hidden temporary file
(``.iter_4.pth.<8 characters>.tmp``) behind;
:func:`remove_stale_temp_files` deletes them when the next run starts.
"""
import os
import os.path as osp
import re
import secrets
from typing import List, Union

from mmengine.fileio import LocalBackend, register_backend

# ``.<target name>.<8 random characters>.tmp``: the names atomic_write
# gives (8 hex digits) and the ones tempfile.mkstemp gave before it
# (8 of [a-z0-9_]).
_TEMP_NAME = re.compile(r'^\..+\.[a-z0-9_]{8}\.tmp$')


def atomic_write(data: bytes, filepath: Union[str, os.PathLike]) -> None:
    """Write ``data`` to ``filepath`` atomically (temp file + rename).

    The file gets the permissions of any new file (0666 minus the umask),
    like one written with ``open(path, 'wb')``; ``tempfile.mkstemp`` would
    create it 0600 whatever the umask.

    Args:
        data (bytes): Content to write.
        filepath (str or PathLike): Destination path.
    """
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    while True:
        tmp = osp.join(folder, f'.{osp.basename(filepath)}.'
                       f'{secrets.token_hex(4)}.tmp')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete the temporary files that :func:`atomic_write` left in
    ``folder`` when its process was killed mid-write.

    Call it only while no other process writes into ``folder`` (the
    training tool holds the work dir's lock, see
    :class:`vovdet.utils.WorkDirLock`).

    Returns:
        list[str]: The paths removed.
    """
    if not osp.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if _TEMP_NAME.match(name) and osp.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


class AtomicLocalBackend(LocalBackend):
    """:class:`mmengine.fileio.LocalBackend` whose writes are atomic."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        """Write bytes to ``filepath`` atomically."""
        atomic_write(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically."""
        atomic_write(obj.encode(encoding), filepath)


register_backend('atomic_local', AtomicLocalBackend)
