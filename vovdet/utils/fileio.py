"""An atomic local file backend for checkpoints.

mmengine writes checkpoints with ``open(path, 'wb').write(...)``: a run
killed (or a disk filling up) in the middle of that write leaves a truncated
file under the checkpoint's final name. :class:`AtomicLocalBackend` writes
to a temporary file in the same folder, fsyncs it and renames it over the
target, so a checkpoint file is either the old complete one or the new
complete one. The configs select it with
``CheckpointHook(backend_args=dict(backend='atomic_local'))``.
"""
import os
import os.path as osp
import tempfile
from typing import Union

from mmengine.fileio import LocalBackend, register_backend


def atomic_write(data: bytes, filepath: Union[str, os.PathLike]) -> None:
    """Write ``data`` to ``filepath`` atomically (temp file + rename).

    Args:
        data (bytes): Content to write.
        filepath (str or PathLike): Destination path.
    """
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(filepath)}.', suffix='.tmp')
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
