"""What the OpenAI-compatible client sends, and how it reads what comes back."""

from __future__ import annotations

import base64
import io

import PIL.Image
import pytest

from pipelines.remote import BadResponse, OpenAICompatibleClient, ProviderSimulator, RequestRejected
from tests.pipelines.remote.conftest import KEY_A, TIMEOUT_S, RecordingSession, canned_session


def test_image_requests_follow_the_images_api_with_extra_fields(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    client = OpenAICompatibleClient(simulator.base_url, timeout_s=TIMEOUT_S, session=session)
    client.generate_image(
        key=KEY_A, model="m", prompt="a fox", width=64, height=32, seed=5, steps=3, negative_prompt="blurry"
    )
    (sent,) = session.sent
    assert sent["method"] == "POST" and str(sent["url"]).endswith("/v1/images/generations")
    assert sent["json"] == {
        "model": "m",
        "prompt": "a fox",
        "size": "64x32",
        "n": 1,
        "response_format": "b64_json",
        "seed": 5,
        "steps": 3,
        "negative_prompt": "blurry",
    }


def test_extra_image_fields_can_be_left_out_for_strict_servers(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    client = OpenAICompatibleClient(simulator.base_url, timeout_s=TIMEOUT_S, session=session, extra_image_fields=False)
    client.generate_image(
        key=KEY_A, model="m", prompt="a fox", width=64, height=32, seed=5, steps=3, negative_prompt="blurry"
    )
    assert set(session.sent[0]["json"]) == {"model", "prompt", "size", "n", "response_format"}


def test_chat_requests_carry_system_and_user_messages_seed_and_bounds(
    simulator: ProviderSimulator, session: RecordingSession
) -> None:
    client = OpenAICompatibleClient(simulator.base_url + "/v1/", timeout_s=TIMEOUT_S, session=session, temperature=0.5)
    client.complete_text(key=KEY_A, model="chat", system="be brief", prompt="a fox", seed=9, max_tokens=12)
    (sent,) = session.sent
    assert str(sent["url"]) == f"{simulator.base_url}/v1/chat/completions"  # a trailing /v1 is not doubled
    assert sent["json"] == {
        "model": "chat",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a fox"}],
        "seed": 9,
        "max_tokens": 12,
        "temperature": 0.5,
    }


def test_a_malformed_request_raises_request_rejected_with_the_server_message(simulator: ProviderSimulator) -> None:
    client = OpenAICompatibleClient(simulator.base_url, timeout_s=TIMEOUT_S)
    with pytest.raises(RequestRejected) as caught:
        client.generate_image(
            key=KEY_A, model="m", prompt="a fox", width=4096, height=32, seed=0, steps=1, negative_prompt=None
        )
    assert caught.value.status == 400 and "size" in caught.value.reason


def test_an_image_given_as_a_url_is_fetched_without_the_key() -> None:
    png = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), (10, 20, 30)).save(png, format="PNG")
    session, adapter = canned_session(
        (200, {"data": [{"url": "http://canned/files/out.png"}]}, {}),
        (200, png.getvalue(), {}),
    )
    client = OpenAICompatibleClient("http://canned", timeout_s=TIMEOUT_S, session=session)
    image = client.generate_image(
        key=KEY_A, model="m", prompt="p", width=8, height=8, seed=0, steps=1, negative_prompt=None
    )
    assert image.getpixel((0, 0)) == (10, 20, 30)
    api_call, file_fetch = adapter.requests
    assert api_call.headers["Authorization"] == f"Bearer {KEY_A}"
    assert "Authorization" not in file_fetch.headers


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"choices": []}, {}),
        (200, {"choices": [{"message": {"content": None}}]}, {}),
        (200, b"<html>gateway</html>", {}),
        (200, [1, 2], {}),
    ],
    ids=["no choices", "no content", "not json", "not an object"],
)
def test_an_answer_without_the_expected_fields_raises_bad_response(answer: tuple[int, object, dict[str, str]]) -> None:
    session, _ = canned_session(answer)
    client = OpenAICompatibleClient("http://canned", timeout_s=TIMEOUT_S, session=session)
    with pytest.raises(BadResponse):
        client.complete_text(key=KEY_A, model="m", system="s", prompt="p", seed=0, max_tokens=4)


def test_an_image_that_does_not_decode_raises_bad_response() -> None:
    session, _ = canned_session((200, {"data": [{"b64_json": base64.b64encode(b"not a png").decode()}]}, {}))
    client = OpenAICompatibleClient("http://canned", timeout_s=TIMEOUT_S, session=session)
    with pytest.raises(BadResponse):
        client.generate_image(
            key=KEY_A, model="m", prompt="p", width=8, height=8, seed=0, steps=1, negative_prompt=None
        )
