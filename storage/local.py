"""A directory as object store: the embedded default when no S3 endpoint is set.

Reads and writes wait out what a full or flaky disk does (``storage/retry.py``): ENOSPC and EDQUOT
(an operator or a cleanup frees space; failing the stage would only run it again into the same
full disk) and EIO, ESTALE, ETIMEDOUT, EAGAIN (what an NFS or SMB mount under ``data_dir`` says
while its server is away). A missing file, a permission error or a bad key raises at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from storage.base import ObjectStore
from storage.retry import DEFAULT_RETRY_S, StorageRetry

#: ``OSError`` numbers worth waiting out (see the module's docstring).
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN})


def is_transient(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS


class LocalStore(ObjectStore):
    """Objects as files below ``root``; writes are atomic (temp file, then rename)."""

    def __init__(self, root: Path, *, retry_s: float = DEFAULT_RETRY_S) -> None:
        self.root = root.resolve()
        self.retry = StorageRetry(f"directory {str(self.root)!r}", is_transient, retry_s=retry_s)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        self.retry.call("put", key, lambda: _write_atomically(path, data))

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return self.retry.call("get", key, path.read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return self.retry.call("exists", key, path.is_file)

    def share_url(self, key: str, ttl_s: int) -> str:
        return self._path(key).as_uri()


def _write_atomically(path: Path, data: bytes) -> None:
    """A temp file beside ``path``, renamed over it; a failed write leaves no temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
