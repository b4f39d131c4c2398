"""Key fingerprints and the static key provider's failover, against the simulator."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.remote import (
    KeyRejected,
    ProviderClient,
    ProviderSimulator,
    ProviderUnavailable,
    RateLimited,
    StaticKeyProvider,
    key_fingerprint,
)
from tests.pipelines.remote.conftest import KEY_A, KEY_B, KEY_LIMITED, KEY_UNKNOWN


def chat_with(client: ProviderClient, keys: StaticKeyProvider) -> str:
    return keys.call(
        client.name,
        "m",
        lambda key: client.complete_text(
            key=key,
            model="m",
            system="s",
            prompt="a fox",
            seed=0,
            max_tokens=4,
        ),
    )


def test_a_fingerprint_is_the_first_twelve_hex_characters_of_the_sha256() -> None:
    assert key_fingerprint(KEY_A) == hashlib.sha256(KEY_A.encode()).hexdigest()[:12]
    assert key_fingerprint(KEY_A) != key_fingerprint(KEY_B)


def test_a_provider_needs_at_least_one_key() -> None:
    with pytest.raises(ValueError):
        StaticKeyProvider([])


def test_a_revoked_key_fails_over_to_the_next_and_is_not_tried_again(
    client: ProviderClient, simulator: ProviderSimulator
) -> None:
    simulator.revoke(KEY_A)
    keys = StaticKeyProvider([KEY_A, KEY_B])
    assert chat_with(client, keys)
    assert chat_with(client, keys)
    stats = simulator.stats()
    assert stats[key_fingerprint(KEY_A)]["unauthorized"] == 1
    assert stats[key_fingerprint(KEY_B)]["accepted"] == 2


def test_an_exhausted_key_fails_over_to_the_next(client: ProviderClient, simulator: ProviderSimulator) -> None:
    keys = StaticKeyProvider([KEY_LIMITED, KEY_B])
    for _ in range(5):
        chat_with(client, keys)
    stats = simulator.stats()
    assert stats[key_fingerprint(KEY_LIMITED)]["accepted"] == 3
    assert stats[key_fingerprint(KEY_LIMITED)]["rate_limited"] == 2
    assert stats[key_fingerprint(KEY_B)]["accepted"] == 2


def test_when_every_key_is_out_the_soonest_rate_limit_is_raised(client: ProviderClient) -> None:
    keys = StaticKeyProvider([KEY_UNKNOWN, KEY_LIMITED])
    for _ in range(3):
        chat_with(client, keys)
    with pytest.raises(RateLimited):
        chat_with(client, keys)


def test_when_every_key_is_rejected_the_rejection_is_raised_on_every_call(client: ProviderClient) -> None:
    keys = StaticKeyProvider([KEY_UNKNOWN])
    for _ in range(2):
        with pytest.raises(KeyRejected):
            chat_with(client, keys)


def test_a_server_error_is_not_blamed_on_the_key(client: ProviderClient, simulator: ProviderSimulator) -> None:
    simulator.start_fault_burst(1)
    keys = StaticKeyProvider([KEY_A, KEY_B])
    with pytest.raises(ProviderUnavailable):
        chat_with(client, keys)
    assert key_fingerprint(KEY_B) not in simulator.stats()  # no failover happened


def test_the_provider_repr_shows_fingerprints_only() -> None:
    shown = repr(StaticKeyProvider([KEY_A, KEY_B]))
    assert KEY_A not in shown and key_fingerprint(KEY_A) in shown
