"""The object store interface that stages write intermediates and results to."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredObject:
    """Where an object went and what it holds."""

    key: str
    sha256: str
    size_bytes: int
    content_type: str

    def as_dict(self) -> dict[str, str | int]:
        return dict(self.__dict__)


def content_key(prefix: str, data: bytes, extension: str) -> tuple[str, str]:
    """A key named by the content's sha256, so that rewriting the same bytes is a no-op.

    Returns (key, sha256).
    """
    digest = hashlib.sha256(data).hexdigest()
    return f"{prefix}/{digest[:2]}/{digest}.{extension}", digest


_CONTENT_KEY_TAIL = re.compile(r"/([0-9a-f]{2})/(\1[0-9a-f]{62})\.([A-Za-z0-9.]+)$")


def content_name(key: str) -> str | None:
    """The part of a ``content_key`` that stands for its bytes, ``"{sha256}.{extension}"``; None for other keys.

    Two content keys with the same name hold the same bytes whatever their prefixes (one job's
    ``jobs/{id}/image`` and another's).
    """
    match = _CONTENT_KEY_TAIL.search(key)
    return f"{match.group(2)}.{match.group(3)}" if match else None


class ObjectStore(ABC):
    """Put, get and share objects by key. Implementations: local directory, S3.

    Reads and writes wait out outages and raise ``storage.retry.StorageUnavailable`` only when one
    outlasts the store's ``retry_s``.
    """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Write ``data`` at ``key``, replacing what was there."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the object at ``key``. Raises KeyError if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""

    @abstractmethod
    def share_url(self, key: str, ttl_s: int) -> str:
        """A URL that reads the object without credentials (presigned where possible)."""

    def put_content(self, prefix: str, data: bytes, extension: str, content_type: str) -> StoredObject:
        """Store ``data`` under a content-addressed key below ``prefix``; skip the write if present."""
        key, digest = content_key(prefix, data, extension)
        if not self.exists(key):
            self.put_bytes(key, data, content_type)
        return StoredObject(key=key, sha256=digest, size_bytes=len(data), content_type=content_type)
