"""An S3-compatible bucket (AWS, MinIO, R2, moto) as object store, through boto3.

Every read and write waits out an outage (``storage/retry.py``): ``StorageRetry`` retries it by
time, botocore not at all (see ``BOTOCORE_MAX_ATTEMPTS``). Timeouts are short, so a black-holed
endpoint fails into that loop instead of hanging a stage.
Presigned URLs are SigV4 (``X-Amz-Algorithm=AWS4-HMAC-SHA256``), never SigV2, and live 1 s to 7 days.
Presigning needs no network (SigV4 signs locally), so ``share_url`` is not retried.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from queue_config.settings import MAX_PRESIGNED_URL_TTL_S, MIN_PRESIGNED_URL_TTL_S
from storage.base import ObjectStore
from storage.retry import DEFAULT_RETRY_S, StorageRetry

#: Objects above this size are uploaded in parts.
MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024
#: Connecting longer than this is a failed attempt (then retried): an endpoint that drops
#: packets costs seconds, not the kernel's minutes.
CONNECT_TIMEOUT_S = 3.0
#: Waiting longer than this for the next bytes of a response is a failed attempt (then retried).
READ_TIMEOUT_S = 20.0
#: Attempts botocore makes of one call. One: its own retries count attempts and back off up to 20 s
#: between them, which would make each of ``StorageRetry``'s attempts last an unknown time (three
#: read timeouts and two backoffs) and overshoot its deadline; one layer that retries by time is clearer.
BOTOCORE_MAX_ATTEMPTS = 1
#: S3 error codes worth waiting out whatever their HTTP status: throttling and "try again".
TRANSIENT_ERROR_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequestsException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException",
    "ServiceUnavailable", "InternalError",
})
_NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


def is_transient(error: BaseException) -> bool:
    """Connection refused or reset, timeouts, a cut-off response, 5xx, 429 and throttling codes.

    Not found, access denied and invalid requests (other 4xx) are not: waiting would not change them.
    """
    if isinstance(error, BotocoreConnectionError | HTTPClientError | IncompleteReadError):
        return True
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429 or _code(error) in TRANSIENT_ERROR_CODES
    return False


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Objects in ``bucket`` at ``endpoint_url``, addressed path-style.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``...). Reads and writes retry
    transient failures for ``retry_s`` seconds, then raise ``StorageUnavailable``.
    """

    def __init__(
        self, endpoint_url: str, bucket: str, region: str = "us-east-1", client: Any = None, *,
        retry_s: float = DEFAULT_RETRY_S, connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.bucket = bucket
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"total_max_attempts": BOTOCORE_MAX_ATTEMPTS, "mode": "standard"},
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
            ),
        )
        self.transfer_config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD_BYTES)
        where = urlsplit(endpoint_url)  # named without the user:password an endpoint URL may carry
        name = f"s3 bucket {bucket!r} at {where.scheme}://{where.netloc.rpartition('@')[2]}"
        self.retry = StorageRetry(name, is_transient, retry_s=retry_s)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""

        def ensure() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                if is_transient(error):
                    raise
                self.client.create_bucket(Bucket=self.bucket)

        self.retry.call("ensure bucket", self.bucket, ensure)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.retry.call("put", key, lambda: self.client.upload_fileobj(
            io.BytesIO(data), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=self.transfer_config
        ))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.retry.call(
                "get", key, lambda: self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            )
        except ClientError as error:
            if _code(error) in _NOT_FOUND_CODES:
                raise KeyError(key) from None
            raise

    def exists(self, key: str) -> bool:
        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except ClientError as error:
                if _code(error) in _NOT_FOUND_CODES:
                    return False
                raise

        return self.retry.call("exists", key, head)

    def share_url(self, key: str, ttl_s: int) -> str:
        """A SigV4 presigned GET of ``key``, valid for ``ttl_s`` seconds.

        Raises:
            ValueError: When ``ttl_s`` is not between 1 s and 7 days (604800 s), SigV4's bounds.
        """
        if not MIN_PRESIGNED_URL_TTL_S <= ttl_s <= MAX_PRESIGNED_URL_TTL_S:
            raise ValueError(f"a presigned URL lives {MIN_PRESIGNED_URL_TTL_S} s to {MAX_PRESIGNED_URL_TTL_S} s "
                             f"(7 days); got ttl_s={ttl_s}")
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
        )
