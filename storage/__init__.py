"""Object stores for intermediates and results.

Both stores wait out storage outages by time (``storage/retry.py``), for ``Settings.storage_retry_s``.
"""

from __future__ import annotations

from queue_config.settings import Settings
from storage.base import ObjectStore, StoredObject, content_key
from storage.local import LocalStore
from storage.retry import StorageUnavailable
from storage.s3 import S3Store

__all__ = [
    "LocalStore", "ObjectStore", "S3Store", "StorageUnavailable", "StoredObject", "content_key", "open_store",
]


def open_store(settings: Settings) -> ObjectStore:
    """The S3 store when an endpoint is configured, else the local directory store."""
    if settings.s3_endpoint_url:
        store = S3Store(
            settings.s3_endpoint_url, settings.s3_bucket, settings.s3_region, retry_s=settings.storage_retry_s
        )
        store.ensure_bucket()
        return store
    return LocalStore(settings.data_dir / "objects", retry_s=settings.storage_retry_s)
