from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest

from storage import LocalStore, ObjectStore, S3Store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path)
    endpoint = request.getfixturevalue("s3_endpoint")
    s3 = S3Store(endpoint, f"bucket-{hashlib.md5(str(tmp_path).encode()).hexdigest()[:12]}")
    s3.ensure_bucket()
    return s3


def test_content_is_stored_under_its_sha256_and_reads_back(store: ObjectStore) -> None:
    stored = store.put_content("results", b"frame bytes", "bin", "application/octet-stream")
    digest = hashlib.sha256(b"frame bytes").hexdigest()
    assert stored.key == f"results/{digest[:2]}/{digest}.bin" and stored.size_bytes == 11
    assert store.get_bytes(stored.key) == b"frame bytes"


def test_storing_the_same_content_twice_gives_the_same_key(store: ObjectStore) -> None:
    assert store.put_content("p", b"same", "txt", "text/plain") == store.put_content("p", b"same", "txt", "text/plain")


def test_a_missing_key_raises_key_error(store: ObjectStore) -> None:
    assert not store.exists("nothing/here")
    with pytest.raises(KeyError):
        store.get_bytes("nothing/here")


def test_a_shared_url_reads_the_object_without_credentials(store: ObjectStore) -> None:
    stored = store.put_content("results", b"shared", "txt", "text/plain")
    with urllib.request.urlopen(store.share_url(stored.key, ttl_s=60)) as response:
        assert response.read() == b"shared"


def test_the_local_store_refuses_keys_that_escape_its_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalStore(tmp_path / "root").put_bytes("../outside", b"x", "text/plain")
