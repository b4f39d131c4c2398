"""Presigned result URLs: SigV4 (never SigV2), and a lifetime between 1 s and 7 days, in the store and the setting."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from queue_config.settings import Settings
from storage import S3Store

SEVEN_DAYS_S = 7 * 24 * 3600
#: Lifetimes out of bounds: none, negative, a day over SigV4's seven.
BAD_TTLS_S = (0, -1, 8 * 24 * 3600)


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> S3Store:
    store = S3Store(s3_endpoint, "presigned-urls")
    store.ensure_bucket()
    return store


@pytest.mark.parametrize("ttl_s", [1, 3600, SEVEN_DAYS_S])
def test_a_presigned_url_is_sigv4_and_reads_the_object_without_credentials(s3: S3Store, ttl_s: int) -> None:
    stored = s3.put_content("results", b"a finished video", "mp4", "video/mp4")
    url = s3.share_url(stored.key, ttl_s)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == [str(ttl_s)]
    assert "Signature" not in query and "AWSAccessKeyId" not in query  # no SigV2 parameters
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"a finished video"


@pytest.mark.parametrize("ttl_s", BAD_TTLS_S)
def test_a_lifetime_off_one_second_to_seven_days_is_refused(s3: S3Store, ttl_s: int) -> None:
    with pytest.raises(ValueError, match=r"1 s to 604800 s \(7 days\); got ttl_s=" + str(ttl_s)):
        s3.share_url("results/any.mp4", ttl_s)


@pytest.mark.parametrize("ttl_s", BAD_TTLS_S)
def test_the_setting_refuses_the_same_lifetimes_at_load(ttl_s: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEQUEUE_PRESIGNED_URL_TTL_S", str(ttl_s))
    with pytest.raises(ValidationError, match="presigned_url_ttl_s"):
        Settings()


def test_the_setting_takes_the_bounds_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    for ttl_s in (1, SEVEN_DAYS_S):
        monkeypatch.setenv("FRAMEQUEUE_PRESIGNED_URL_TTL_S", str(ttl_s))
        assert Settings().presigned_url_ttl_s == ttl_s
