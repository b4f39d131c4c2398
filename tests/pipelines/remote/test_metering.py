"""Provider calls counted by the running stage's meter: every key tried, pool threads included."""

from __future__ import annotations

from pipelines.metering import start_meter, take_meter
from pipelines.remote import ProviderClient, ProviderSimulator, RemoteTextToImage, StaticKeyProvider
from tests.pipelines.remote.conftest import KEY_A, KEY_LIMITED


def test_a_failover_after_a_429_is_a_second_call(client: ProviderClient, simulator: ProviderSimulator) -> None:
    keys = StaticKeyProvider([KEY_LIMITED, KEY_A])
    backend = RemoteTextToImage(client, "framequeue/sim-image", keys, max_concurrency=1)
    backend(["a", "b", "c"], seeds=[0, 1, 2], width=32, height=32, steps=1)  # spends KEY_LIMITED's 3 a minute

    start_meter()
    backend(["d"], seeds=[3], width=32, height=32, steps=1)
    meter = take_meter()

    limited = [entry["rate_limited"] for entry in simulator.stats().values()]
    assert limited.count(1) == 1 and limited.count(0) == len(limited) - 1  # KEY_LIMITED refused once, KEY_A served
    assert meter.provider_calls == 2


def test_requests_made_on_pool_threads_count_for_the_stage(client: ProviderClient) -> None:
    backend = RemoteTextToImage(client, "framequeue/sim-image", StaticKeyProvider([KEY_A]), max_concurrency=3)

    start_meter()
    backend(["a", "b", "c"], seeds=[0, 1, 2], width=32, height=32, steps=1)
    meter = take_meter()

    assert meter.provider_calls == 3


def test_nothing_is_counted_without_a_meter(client: ProviderClient) -> None:
    RemoteTextToImage(client, "framequeue/sim-image", StaticKeyProvider([KEY_A]))(["a"], seeds=[0], width=32,
                                                                                  height=32, steps=1)

    assert take_meter().provider_calls == 0
