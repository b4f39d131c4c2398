"""What the Replicate client sends, how it polls, and how a prediction's end is read."""

from __future__ import annotations

import pytest

from pipelines.remote import GenerationFailed, ProviderSimulator, ProviderTimeout, ReplicateClient
from pipelines.remote.replicate import aspect_ratio
from tests.pipelines.remote.conftest import KEY_A, TIMEOUT_S, RecordingSession


def replicate(simulator: ProviderSimulator, session: RecordingSession, max_wait_s: float = 5.0) -> ReplicateClient:
    return ReplicateClient(
        simulator.base_url, timeout_s=TIMEOUT_S, session=session, poll_interval_s=0.01, max_wait_s=max_wait_s
    )


def test_an_official_model_runs_on_its_own_endpoint_waiting_for_the_output(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    client = replicate(simulator, session)
    client.generate_image(
        key=KEY_A,
        model="black-forest-labs/flux-schnell",
        prompt="a fox",
        width=96,
        height=64,
        seed=4,
        steps=2,
        negative_prompt=None,
    )
    create, fetch = session.sent
    assert str(create["url"]) == f"{simulator.base_url}/v1/models/black-forest-labs/flux-schnell/predictions"
    assert create["headers"]["Prefer"] == "wait=1"  # held below the 2 s test timeout
    assert create["json"] == {
        "input": {
            "prompt": "a fox",
            "width": 96,
            "height": 64,
            "seed": 4,
            "num_inference_steps": 2,
            "num_outputs": 1,
            "output_format": "png",
            "aspect_ratio": "3:2",
        }
    }
    assert "/_files/" in str(fetch["url"]) and "Authorization" not in fetch["headers"]


def test_a_pinned_version_runs_on_the_predictions_endpoint(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    client = replicate(simulator, session)
    text = client.complete_text(
        key=KEY_A, model="meta/llama:abc123", system="be brief", prompt="a fox", seed=2, max_tokens=5
    )
    (create,) = session.sent
    assert str(create["url"]) == f"{simulator.base_url}/v1/predictions"
    assert create["json"]["version"] == "meta/llama:abc123"
    assert create["json"]["input"]["system_prompt"] == "be brief"
    assert len(text.split()) <= 5


def test_a_prediction_that_outlives_the_wait_is_polled_to_its_output(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    simulator.set_pending_polls(3)
    client = replicate(simulator, session)
    image = client.generate_image(
        key=KEY_A, model="o/n", prompt="a fox", width=32, height=32, seed=1, steps=1, negative_prompt=None
    )
    assert image.size == (32, 32)
    polls = [sent for sent in session.sent if sent["method"] == "GET" and "/v1/predictions/" in str(sent["url"])]
    assert len(polls) == 3


def test_a_failed_prediction_raises_generation_failed_with_its_error(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    simulator.fail_next_predictions(1)
    with pytest.raises(GenerationFailed) as caught:
        replicate(simulator, session).complete_text(
            key=KEY_A, model="o/n", system="s", prompt="p", seed=0, max_tokens=4
        )
    assert caught.value.status == "failed" and "simulated" in caught.value.reason


def test_a_prediction_past_its_deadline_is_canceled_and_raises_provider_timeout(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    simulator.set_pending_polls(1000)
    client = replicate(simulator, session, max_wait_s=0.1)
    with pytest.raises(ProviderTimeout):
        client.complete_text(key=KEY_A, model="o/n", system="s", prompt="p", seed=0, max_tokens=4)
    cancel = session.sent[-1]
    assert cancel["method"] == "POST" and str(cancel["url"]).endswith("/cancel")


@pytest.mark.parametrize(
    ("width", "height", "ratio"), [(512, 512, "1:1"), (1024, 576, "16:9"), (512, 768, "2:3"), (520, 512, None)]
)
def test_standard_aspect_ratios_are_named_and_others_are_not(width: int, height: int, ratio: str | None) -> None:
    assert aspect_ratio(width, height) == ratio


@pytest.mark.parametrize(
    ("timeout_s", "sync_wait_s", "expected"), [(60, 30, 30), (20, 30, 19), (120, 90, 60), (0.5, 30, 1)]
)
def test_the_sync_wait_stays_within_replicates_range_and_below_the_timeout(
    timeout_s: float, sync_wait_s: int, expected: int
) -> None:
    assert ReplicateClient(timeout_s=timeout_s, sync_wait_s=sync_wait_s).sync_wait_s == expected
