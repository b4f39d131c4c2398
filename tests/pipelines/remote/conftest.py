"""Fixtures for the remote provider tests: a simulator on loopback and clients pointed at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import requests.adapters

from pipelines.remote import KeyConfig, OpenAICompatibleClient, ProviderClient, ProviderSimulator, ReplicateClient

#: Keys the simulator accepts. Long and distinctive, so a leak is easy to find in any text.
KEY_A = "sk-sim-alpha-4f1c9e7a2b6d8e03"
KEY_B = "sk-sim-bravo-9a8b7c6d5e4f3a21"
#: A key with room for three requests a minute.
KEY_LIMITED = "sk-sim-limited-1b2c3d4e5f6a7b8c"
#: A key the simulator has never heard of.
KEY_UNKNOWN = "sk-sim-unknown-0e9d8c7b6a5f4e3d"
#: Client timeout in tests, in seconds: long for loopback, short enough for timeout tests.
TIMEOUT_S = 2.0


class RecordingSession(requests.Session):
    """A real session that also remembers every request it sent (method, URL, headers, JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(
            {"method": method, "url": url, "headers": dict(kwargs.get("headers") or {}), "json": kwargs.get("json")}
        )
        return super().request(str(method), str(url), *args, **kwargs)


@pytest.fixture
def simulator() -> Iterator[ProviderSimulator]:
    keys = {
        KEY_A: KeyConfig(requests_per_minute=1000),
        KEY_B: KeyConfig(requests_per_minute=1000),
        KEY_LIMITED: KeyConfig(requests_per_minute=3),
    }
    with ProviderSimulator(keys) as running:
        yield running


@pytest.fixture
def session() -> RecordingSession:
    return RecordingSession()


def make_client(kind: str, base_url: str, session: requests.Session, **options: Any) -> ProviderClient:
    """An OpenAI-compatible or Replicate client on ``base_url``, with test-sized timeouts."""
    options.setdefault("timeout_s", TIMEOUT_S)
    if kind == "openai":
        return OpenAICompatibleClient(base_url, session=session, **options)
    return ReplicateClient(base_url, session=session, poll_interval_s=0.01, **options)


@pytest.fixture(params=["openai", "replicate"])
def client(request: pytest.FixtureRequest, simulator: ProviderSimulator, session: RecordingSession) -> ProviderClient:
    """Each client in turn, pointed at the simulator."""
    return make_client(request.param, simulator.base_url, session)


class CannedAdapter(requests.adapters.BaseAdapter):
    """Answers a session's requests with prepared responses, in order: for shapes the simulator never sends."""

    def __init__(self, *answers: tuple[int, Any, dict[str, str]]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        response.headers.update(headers)
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def canned_session(*answers: tuple[int, Any, dict[str, str]]) -> tuple[requests.Session, CannedAdapter]:
    """A session whose requests to ``http://canned`` get ``answers`` in order."""
    session = requests.Session()
    adapter = CannedAdapter(*answers)
    session.mount("http://canned", adapter)
    return session, adapter
