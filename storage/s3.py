"""An S3-compatible bucket (AWS, MinIO, R2, moto) as object store, through boto3."""

from __future__ import annotations

import io
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.base import ObjectStore

#: Objects above this size are uploaded in parts.
MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024


class S3Store(ObjectStore):
    """Objects in ``bucket`` at ``endpoint_url``, addressed path-style.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``...).
    """

    def __init__(self, endpoint_url: str, bucket: str, region: str = "us-east-1", client: Any = None) -> None:
        self.bucket = bucket
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )
        self.transfer_config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD_BYTES)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.client.upload_fileobj(
            io.BytesIO(data), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=self.transfer_config
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def share_url(self, key: str, ttl_s: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
        )
