"""Storage outages are waited out by time: the S3 store through a proxy that the tests cut."""

from __future__ import annotations

import errno
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from storage import LocalStore, S3Store, StorageUnavailable
from storage import s3 as s3_module
from tests.fault_proxy import FaultProxy
from tests.servers import wait_for

#: How long the short outages last: several backoff windows, a few seconds in all.
OUTAGE_S = 3.0


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    target = urlsplit(s3_endpoint)
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 80) as running:
        yield running


def store_through(proxy: FaultProxy, **options: float) -> S3Store:
    store = S3Store(proxy.url, f"outage-{uuid.uuid4().hex[:12]}", **options)  # type: ignore[arg-type]
    store.ensure_bucket()
    return store


def direct_read(s3_endpoint: str, store: S3Store, key: str) -> bytes:
    """The object as the S3 server holds it, read without the proxy."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    return client.get_object(Bucket=store.bucket, Key=key)["Body"].read()


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "storage.retry"]


def test_a_put_and_a_get_cut_off_for_a_few_seconds_succeed_once_storage_is_back(
    proxy: FaultProxy, s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="storage.retry")
    store = store_through(proxy, retry_s=60)
    store.put_bytes("jobs/j1/image.png", b"the key image", "image/png")

    proxy.cut()
    cut_at = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        put = pool.submit(store.put_bytes, "jobs/j1/frames.bin", b"the frames", "application/octet-stream")
        get = pool.submit(store.get_bytes, "jobs/j1/image.png")
        wait_for(lambda: store.retry.retried >= 4 and time.monotonic() - cut_at >= OUTAGE_S, 60,
                 "both calls to be retried through the outage")
        assert not put.done() and not get.done()
        proxy.restore()

        assert get.result(timeout=60) == b"the key image"
        put.result(timeout=60)
    assert direct_read(s3_endpoint, store, "jobs/j1/frames.bin") == b"the frames"
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines  # one when it went, one when it came back: not one per attempt
    assert "unreachable" in lines[0] and "jobs/j1/" in lines[0] and f"127.0.0.1:{proxy.port}" in lines[0]
    assert "reachable again" in lines[1]
    assert "test-secret-key" not in " ".join(lines) and "test-access-key" not in " ".join(lines)


def test_a_cut_longer_than_the_retry_deadline_fails_naming_the_store_and_the_key(proxy: FaultProxy) -> None:
    store = store_through(proxy, retry_s=2)
    proxy.cut()

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as failure:
        store.put_bytes("results/ab/abcdef.mp4", b"a video", "video/mp4")
    waited_s = time.monotonic() - started

    message = str(failure.value)
    assert f"s3 bucket {store.bucket!r} at http://127.0.0.1:{proxy.port}" in message
    assert "put 'results/ab/abcdef.mp4'" in message and "EndpointConnectionError" in message
    assert isinstance(failure.value.__cause__, EndpointConnectionError)
    assert 2 <= waited_s < 20 and store.retry.retried >= 1  # the last attempt comes at the deadline


def test_a_missing_key_is_not_retried(proxy: FaultProxy) -> None:
    store = store_through(proxy, retry_s=60)

    started = time.monotonic()
    with pytest.raises(KeyError):
        store.get_bytes("nothing/here")
    assert not store.exists("nothing/here")

    assert time.monotonic() - started < 5 and store.retry.retried == 0


def test_a_presigned_url_is_made_without_reaching_storage(proxy: FaultProxy) -> None:
    store = store_through(proxy, retry_s=60)
    store.put_bytes("results/shared.txt", b"shared", "text/plain")
    proxy.cut()

    url = store.share_url("results/shared.txt", ttl_s=60)  # SigV4 signs locally: no connection
    proxy.restore()

    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"shared"
    assert store.retry.retried == 0


def test_a_black_holed_endpoint_times_out_into_the_retry_loop_instead_of_hanging(proxy: FaultProxy) -> None:
    store = store_through(proxy, retry_s=60, connect_timeout_s=1, read_timeout_s=1)
    proxy.stall()

    with ThreadPoolExecutor(1) as pool:
        put = pool.submit(store.put_bytes, "jobs/j2/video.mp4", b"a video", "video/mp4")
        wait_for(lambda: store.retry.retried >= 1, 30, "an attempt to time out and be retried")
        proxy.restore()
        put.result(timeout=60)

    assert store.get_bytes("jobs/j2/video.mp4") == b"a video"


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_throttling_and_server_errors_are_waited_out_and_other_client_errors_are_not() -> None:
    waited = [client_error(503, "SlowDown"), client_error(500, "InternalError"), client_error(429, "TooManyRequests"),
              client_error(400, "RequestTimeout"), ReadTimeoutError(endpoint_url="http://s3")]
    failed = [client_error(404, "NoSuchKey"), client_error(403, "AccessDenied"), client_error(400, "InvalidRequest"),
              ValueError("bad key")]

    assert all(s3_module.is_transient(error) for error in waited)
    assert not any(s3_module.is_transient(error) for error in failed)


def test_the_local_store_waits_out_a_full_disk_but_not_a_permission_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, retry_s=60)
    failures = [OSError(errno.ENOSPC, "No space left on device")] * 2

    def write() -> str:
        if failures:
            raise failures.pop()
        return "written"

    def refused() -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    assert store.retry.call("put", "jobs/j3/frames.bin", write) == "written"
    assert store.retry.retried == 2
    with pytest.raises(PermissionError):
        store.retry.call("put", "jobs/j3/frames.bin", refused)
    assert store.retry.retried == 2
