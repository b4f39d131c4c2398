"""No API key ever shows in an error's message, repr, arguments, cause, pickle or a log line."""

from __future__ import annotations

import logging
import pickle
import traceback

import pytest
import requests

from pipelines.remote import (
    KeyRejected,
    ProviderClient,
    ProviderError,
    ProviderSimulator,
    StaticKeyProvider,
    key_fingerprint,
)
from tests.pipelines.remote.conftest import KEY_A, KEY_B, KEY_LIMITED, TIMEOUT_S, canned_session, make_client


def everything_said_about(error: BaseException) -> str:
    """Every text a person or a log could see of ``error``, its causes and its pickled form."""
    told = "".join(traceback.format_exception(error))
    return " ".join([str(error), repr(error), repr(error.args), repr(vars(error)), told, repr(pickle.dumps(error))])


def provoke_every_error(client: ProviderClient, simulator: ProviderSimulator, key: str) -> list[ProviderError]:
    """Make ``client`` fail in each way the simulator can, with ``key``; return the errors."""
    errors: list[ProviderError] = []

    def attempt() -> None:
        with pytest.raises(ProviderError) as caught:
            client.complete_text(key=key, model="m", system="s", prompt="p", seed=0, max_tokens=4)
        errors.append(caught.value)

    for _ in range(4):  # three accepted, then rate limited
        try:
            client.complete_text(key=key, model="m", system="s", prompt="p", seed=0, max_tokens=4)
        except ProviderError as error:
            errors.append(error)
    simulator.start_fault_burst(1)
    attempt()
    simulator.revoke(key)
    attempt()
    simulator.restore(key)
    simulator.set_latency(400)
    attempt()
    simulator.set_latency(0)
    return errors


def test_no_error_from_either_client_tells_the_key(client: ProviderClient, simulator: ProviderSimulator) -> None:
    hasty = make_client(client.name, simulator.base_url, client.session, timeout_s=0.15)
    errors = provoke_every_error(hasty, simulator, KEY_LIMITED)
    assert {type(error).__name__ for error in errors} == {
        "RateLimited",
        "ProviderUnavailable",
        "KeyRejected",
        "ProviderTimeout",
    }
    for error in errors:
        said = everything_said_about(error)
        assert KEY_LIMITED not in said and KEY_LIMITED[-8:] not in said
        assert error.key_fingerprint == key_fingerprint(KEY_LIMITED) and error.key_fingerprint in str(error)


def test_a_provider_that_echoes_the_key_has_it_scrubbed_from_the_error() -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {KEY_A} (sk-sim-****{KEY_A[-4:]})"}}
    session, _ = canned_session((400, echo, {}), (401, {"detail": f"token {KEY_A} revoked"}, {}))
    client = make_client("openai", "http://canned", session, timeout_s=TIMEOUT_S)
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            client.complete_text(key=KEY_A, model="m", system="s", prompt="p", seed=0, max_tokens=4)
        said = everything_said_about(caught.value)
        assert KEY_A not in said and KEY_A[-6:] not in said


def test_a_connection_failure_keeps_no_request_headers_in_its_cause() -> None:
    with ProviderSimulator({}) as gone:
        base_url = gone.base_url
    with pytest.raises(ProviderError) as caught:
        make_client("openai", base_url, requests.Session()).complete_text(
            key=KEY_A, model="m", system="s", prompt="p", seed=0, max_tokens=4
        )
    cause = caught.value.__cause__
    assert cause is not None and not hasattr(cause, "request")
    assert KEY_A not in everything_said_about(caught.value)


def test_errors_survive_pickling_with_their_attributes() -> None:
    error = KeyRejected(403, "revoked", provider="openai", key_fingerprint=key_fingerprint(KEY_A))
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.status, copy.reason, copy.key_fingerprint, str(copy)) == (
        KeyRejected,
        403,
        "revoked",
        key_fingerprint(KEY_A),
        str(error),
    )


def test_failover_logs_name_keys_by_fingerprint_only(
    client: ProviderClient, simulator: ProviderSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.revoke(KEY_A)
    with caplog.at_level(logging.DEBUG):
        StaticKeyProvider([KEY_A, KEY_B]).call(
            client.name,
            "m",
            lambda key: client.complete_text(key=key, model="m", system="s", prompt="p", seed=0, max_tokens=4),
        )
    assert caplog.records
    logged = caplog.text
    assert key_fingerprint(KEY_A) in logged and KEY_A not in logged and KEY_B not in logged
