"""The provider simulator: quotas, revocation, faults and its HTTP control endpoints."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import PIL.Image
import pytest
import requests

from pipelines.remote import KeyConfig, ProviderSimulator, key_fingerprint
from pipelines.remote.simulation.ledger import KeyLedger
from tests.pipelines.remote.conftest import KEY_A, KEY_B, KEY_LIMITED

KEY_60 = "sk-sim-sixty-per-minute-5c4b3a29"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def chat(http: requests.Session, base_url: str, key: str) -> requests.Response:
    return http.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
        json={"model": "m", "messages": [{"role": "user", "content": "a fox"}], "max_tokens": 4},
    )


def test_the_61st_request_in_a_minute_on_a_60_rpm_key_gets_429(http: requests.Session) -> None:
    with ProviderSimulator({KEY_60: KeyConfig(requests_per_minute=60)}) as simulator:
        statuses = [chat(http, simulator.base_url, KEY_60).status_code for _ in range(60)]
        refused = chat(http, simulator.base_url, KEY_60)
        stats = simulator.stats()[key_fingerprint(KEY_60)]
    assert statuses == [200] * 60
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert stats["accepted"] == 60 and stats["rate_limited"] == 1
    timestamps = stats["accepted_at"]
    assert isinstance(timestamps, list) and len(timestamps) == 60 and timestamps[-1] - timestamps[0] < 60


def test_the_quota_window_slides_a_slot_free_sixty_seconds_after_it_was_taken() -> None:
    now = [1000.0]
    ledger = KeyLedger({KEY_A: KeyConfig(requests_per_minute=2)}, clock=lambda: now[0])
    assert ledger.admit(KEY_A).status == 200
    now[0] += 20
    assert ledger.admit(KEY_A).status == 200
    refused = ledger.admit(KEY_A)
    assert (refused.status, refused.retry_after_s) == (429, 40)
    now[0] += 40
    assert ledger.admit(KEY_A).status == 200  # the first slot left the window
    assert ledger.admit(KEY_A).retry_after_s == 20


def test_polls_need_a_valid_key_but_use_no_quota() -> None:
    ledger = KeyLedger({KEY_A: KeyConfig(requests_per_minute=1), KEY_B: KeyConfig(revoked=True)})
    assert ledger.admit(KEY_A).status == 200
    assert [ledger.admit(KEY_A, counted=False).status for _ in range(3)] == [200] * 3
    assert ledger.admit(KEY_B, counted=False).status == 401
    assert ledger.admit(None).status == 401


def test_control_endpoints_work_over_http(simulator: ProviderSimulator, http: requests.Session) -> None:
    base, fingerprint = simulator.base_url, key_fingerprint(KEY_A)

    def control(path: str, body: dict[str, int] | None = None) -> requests.Response:
        response = http.post(f"{base}/_sim/{path}", json=body or {}, timeout=5)
        assert response.status_code == 200, response.text
        return response

    control(f"keys/{fingerprint}/revoke")
    assert chat(http, base, KEY_A).status_code == 401
    control(f"keys/{fingerprint}/restore")
    assert chat(http, base, KEY_A).status_code == 200
    control("faults", {"count": 2, "status": 500})
    assert [chat(http, base, KEY_A).status_code for _ in range(3)] == [500, 500, 200]
    for _ in range(3):
        chat(http, base, KEY_LIMITED)
    assert chat(http, base, KEY_LIMITED).status_code == 429
    control("reset-quotas")
    assert chat(http, base, KEY_LIMITED).status_code == 200
    stats = http.get(f"{base}/_sim/stats", timeout=5).json()
    assert stats["keys"][fingerprint] | {"accepted_at": None} == {
        "accepted": 2,
        "rate_limited": 0,
        "unauthorized": 1,
        "server_errors": 2,
        "accepted_at": None,
    }
    assert stats["keys"][key_fingerprint(KEY_LIMITED)]["rate_limited"] == 1
    control("reset-stats")
    assert http.get(f"{base}/_sim/stats", timeout=5).json()["keys"] == {}
    control("latency", {"latency_ms": 300})
    with pytest.raises(requests.Timeout):
        http.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY_A}"},
            timeout=0.1,
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )


def test_control_endpoints_refuse_bad_arguments_and_unknown_keys(
    simulator: ProviderSimulator, http: requests.Session
) -> None:
    base = simulator.base_url
    assert http.post(f"{base}/_sim/keys/nope/revoke", timeout=5).status_code == 404
    assert http.post(f"{base}/_sim/faults", json={"count": 1, "status": 404}, timeout=5).status_code == 400
    assert http.post(f"{base}/_sim/latency", json={"latency_ms": -1}, timeout=5).status_code == 400
    assert http.get(f"{base}/_sim/nothing-here", timeout=5).status_code == 404
    assert http.get(f"{base}/_sim/reset-quotas", timeout=5).status_code == 405


def test_stats_and_answers_never_contain_a_key(simulator: ProviderSimulator, http: requests.Session) -> None:
    answers = [chat(http, simulator.base_url, key).text for key in (KEY_A, "sk-sim-not-a-real-key-123456")]
    simulator.revoke(KEY_B)
    answers.append(chat(http, simulator.base_url, KEY_B).text)
    over_http = http.get(f"{simulator.base_url}/_sim/stats", timeout=5).text
    text = json.dumps(simulator.stats()) + over_http + "".join(answers)
    assert KEY_A not in text and KEY_B not in text and "sk-sim-not-a-real-key" not in text
    assert key_fingerprint(KEY_A) in text


def test_openai_style_images_come_back_as_base64_or_as_a_url(
    simulator: ProviderSimulator, http: requests.Session
) -> None:
    headers = {"Authorization": f"Bearer {KEY_A}"}
    body: dict[str, Any] = {"model": "m", "prompt": "a fox", "size": "40x24", "seed": 3}
    inline = http.post(
        f"{simulator.base_url}/v1/images/generations",
        headers=headers,
        timeout=5,
        json=body | {"response_format": "b64_json"},
    ).json()["data"][0]["b64_json"]
    url = http.post(f"{simulator.base_url}/v1/images/generations", headers=headers, timeout=5, json=body).json()[
        "data"
    ][0]["url"]
    fetched = http.get(url, timeout=5).content
    assert base64.b64decode(inline) == fetched
    assert PIL.Image.open(io.BytesIO(fetched)).size == (40, 24)


def test_the_command_line_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.remote.simulator",
            "--port",
            "0",
            "--keys",
            "cli-key-1,cli-key-2",
            "--rpm",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().split(" at ")[1].strip()
        with requests.Session() as http:
            assert [chat(http, base_url, "cli-key-2").status_code for _ in range(2)] == [200, 429]
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_prediction_controls_work_over_http(simulator: ProviderSimulator, http: requests.Session) -> None:
    base, headers = simulator.base_url, {"Authorization": f"Bearer {KEY_A}"}
    body: dict[str, Any] = {"input": {"prompt": "a fox", "max_tokens": 4}}

    def create() -> dict[str, object]:
        response = http.post(f"{base}/v1/models/o/n/predictions", headers=headers, json=body, timeout=5)
        assert response.status_code == 201
        return dict(response.json())

    assert http.post(f"{base}/_sim/pending-polls", json={"polls": 1}, timeout=5).status_code == 200
    started = create()
    assert started["status"] == "starting" and started["output"] is None
    finished = http.get(f"{base}/v1/predictions/{started['id']}", headers=headers, timeout=5).json()
    assert finished["status"] == "succeeded" and "".join(finished["output"]).strip()
    assert http.post(f"{base}/_sim/fail-predictions", json={"count": 1}, timeout=5).status_code == 200
    http.post(f"{base}/_sim/pending-polls", json={"polls": 0}, timeout=5)
    assert create()["status"] == "failed"
    assert create()["status"] == "succeeded"


def test_a_prompt_holding_a_refused_word_gets_the_content_policy_4xx_on_every_api(
    simulator: ProviderSimulator, http: requests.Session
) -> None:
    base, headers = simulator.base_url, {"Authorization": f"Bearer {KEY_A}"}
    assert http.post(f"{base}/_sim/refused-words", json={"words": ["Castle"]}, timeout=5).status_code == 200
    assert http.post(f"{base}/_sim/refused-words", json={"words": [""]}, timeout=5).status_code == 400

    def image(prompt: str) -> requests.Response:
        body: dict[str, Any] = {"model": "m", "prompt": prompt, "size": "8x8"}
        return http.post(f"{base}/v1/images/generations", headers=headers, json=body, timeout=5)

    def text(prompt: str) -> requests.Response:
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
        return http.post(f"{base}/v1/chat/completions", headers=headers, json=body, timeout=5)

    def prediction(prompt: str) -> requests.Response:
        body: dict[str, Any] = {"input": {"prompt": prompt, "width": 8, "height": 8}}
        return http.post(f"{base}/v1/models/o/n/predictions", headers=headers, json=body, timeout=5)

    try:
        refused = [image("a castle at dusk"), text("the CASTLE gate"), prediction("castle")]
        allowed = [image("a castles' shadow"), text("a moat"), prediction("a tower")]
    finally:
        simulator.refuse_prompts_with()
    assert [response.status_code for response in refused] == [400, 400, 422]
    assert all("content_policy_violation" in response.text for response in refused)
    assert [response.status_code for response in allowed] == [200, 200, 201]
    assert image("a castle at dusk").status_code == 200  # no words: nothing refused
