"""The shared HTTP helper: Retry-After parsing, key scrubbing, and one status-to-error mapping."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.remote import (
    BadResponse,
    KeyRejected,
    OpenAICompatibleClient,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from pipelines.remote.transport import parse_retry_after, scrub
from tests.pipelines.remote.conftest import KEY_A, TIMEOUT_S, canned_session

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_scrubbing_removes_the_key_its_masked_form_and_its_tail() -> None:
    text = f"bad key {KEY_A}; Incorrect API key provided: sk-sim-***************8e03. also ...{KEY_A[-8:]}"
    cleaned = scrub(text, KEY_A)
    assert KEY_A not in cleaned and KEY_A[-6:] not in cleaned and "***" not in cleaned
    assert cleaned.startswith("bad key [key]")


def call_with_answer(status: int, body: object, headers: dict[str, str] | None = None) -> ProviderError:
    session, _ = canned_session((status, body, headers or {}))
    client = OpenAICompatibleClient("http://canned", timeout_s=TIMEOUT_S, session=session)
    with pytest.raises(ProviderError) as caught:
        client.complete_text(key=KEY_A, model="m", system="s", prompt="p", seed=0, max_tokens=4)
    return caught.value


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}, KeyRejected),
        (402, {"title": "Payment required", "detail": "insufficient credit"}, KeyRejected),
        (403, {"error": {"message": "Key revoked", "type": "forbidden"}}, KeyRejected),
        (429, {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}, KeyRejected),
        (429, {"detail": "Request was throttled"}, RateLimited),
        (400, {"error": {"message": "bad size"}}, RequestRejected),
        (404, {"detail": "model not found"}, RequestRejected),
        (422, {"detail": "input.prompt is required"}, RequestRejected),
        (408, b"", ProviderTimeout),
        (500, b"oops", ProviderUnavailable),
        (503, {"error": "overloaded"}, ProviderUnavailable),
        (302, b"", BadResponse),
    ],
)
def test_each_status_maps_to_the_error_that_says_what_to_do(status: int, body: object, expected: type) -> None:
    assert type(call_with_answer(status, body)) is expected


def test_a_spent_quota_names_its_code_as_the_reason() -> None:
    error = call_with_answer(429, {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}})
    assert isinstance(error, KeyRejected) and error.reason == "insufficient_quota" and error.status == 429


def test_a_rate_limit_with_an_http_date_gives_the_seconds_until_then() -> None:
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    error = call_with_answer(429, {}, {"Retry-After": later})
    assert isinstance(error, RateLimited) and error.retry_after_s is not None and 85 <= error.retry_after_s <= 90


def test_request_rejected_carries_the_provider_message_bounded() -> None:
    error = call_with_answer(400, {"error": {"message": "bad size " + "x" * 1000}})
    assert isinstance(error, RequestRejected) and error.reason.startswith("bad size") and len(error.reason) <= 200
