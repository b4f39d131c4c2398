"""Both provider clients against the simulator: outputs, seeding, and what each failure raises."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from pipelines.remote import (
    KeyRejected,
    ProviderClient,
    ProviderSimulator,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    key_fingerprint,
)
from tests.pipelines.remote.conftest import KEY_A, KEY_LIMITED, KEY_UNKNOWN, RecordingSession, make_client

IMAGE_MODEL = "framequeue/sim-image"
TEXT_MODEL = "framequeue/sim-text"


def render(
    client: ProviderClient,
    key: str = KEY_A,
    seed: int = 7,
    prompt: str = "a fox in snow",
    width: int = 96,
    height: int = 64,
) -> PIL.Image.Image:
    return client.generate_image(
        key=key,
        model=IMAGE_MODEL,
        prompt=prompt,
        width=width,
        height=height,
        seed=seed,
        steps=2,
        negative_prompt="blurry",
    )


def complete(client: ProviderClient, key: str = KEY_A, seed: int = 7, prompt: str = "a fox in snow") -> str:
    return client.complete_text(
        key=key, model=TEXT_MODEL, system="extend the prompt", prompt=prompt, seed=seed, max_tokens=6
    )


def test_images_come_back_decoded_at_the_requested_size(client: ProviderClient) -> None:
    image = render(client, width=96, height=64)
    assert image.mode == "RGB"
    assert image.size == (96, 64)
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() != pixels[-1, -1].tolist()  # a gradient, not a blank


def test_the_same_seed_gives_the_same_image_and_another_seed_a_different_one(client: ProviderClient) -> None:
    first, again, other = render(client, seed=1), render(client, seed=1), render(client, seed=2)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_chat_text_is_bounded_and_deterministic_per_seed(client: ProviderClient) -> None:
    text = complete(client, seed=3)
    assert text.strip()
    assert len(text.split()) <= 6
    assert complete(client, seed=3) == text
    assert {complete(client, seed=seed) for seed in range(6)} != {text}


def test_a_key_over_its_quota_raises_rate_limited_with_the_wait(client: ProviderClient) -> None:
    for _ in range(3):
        complete(client, key=KEY_LIMITED)
    with pytest.raises(RateLimited) as caught:
        complete(client, key=KEY_LIMITED)
    assert caught.value.retry_after_s is not None and 1 <= caught.value.retry_after_s <= 60
    assert caught.value.key_fingerprint == key_fingerprint(KEY_LIMITED)


def test_a_revoked_key_raises_key_rejected(client: ProviderClient, simulator: ProviderSimulator) -> None:
    simulator.revoke(KEY_A)
    with pytest.raises(KeyRejected) as caught:
        render(client)
    assert caught.value.status == 401


def test_an_unknown_key_raises_key_rejected(client: ProviderClient) -> None:
    with pytest.raises(KeyRejected) as caught:
        complete(client, key=KEY_UNKNOWN)
    assert caught.value.status == 401


def test_a_burst_of_server_errors_raises_provider_unavailable_then_passes(
    client: ProviderClient, simulator: ProviderSimulator
) -> None:
    simulator.start_fault_burst(2, status=502)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as caught:
            complete(client)
        assert caught.value.status == 502
    assert complete(client)


def test_an_answer_slower_than_the_timeout_raises_provider_timeout(
    simulator: ProviderSimulator, session: RecordingSession, client: ProviderClient
) -> None:
    simulator.set_latency(600)
    hasty = make_client(client.name, simulator.base_url, session, timeout_s=0.15)
    with pytest.raises(ProviderTimeout):
        complete(hasty)


def test_a_closed_port_raises_provider_unavailable_without_a_status(session: RecordingSession) -> None:
    with ProviderSimulator({}) as gone:
        base_url = gone.base_url
    for kind in ("openai", "replicate"):
        with pytest.raises(ProviderUnavailable) as caught:
            complete(make_client(kind, base_url, session))
        assert caught.value.status is None


def test_every_request_carries_the_key_as_a_bearer_token(client: ProviderClient, session: RecordingSession) -> None:
    render(client)
    api_requests = [sent for sent in session.sent if "/v1/" in str(sent["url"])]
    assert api_requests
    assert all(sent["headers"]["Authorization"] == f"Bearer {KEY_A}" for sent in api_requests)
