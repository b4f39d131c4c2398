"""Services started without an optional setting stay up and say so; Ctrl-C is one line and exit 130.

``submit --wait`` on a namespace no worker serves names the missing worker instead of waiting in silence.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import REPO_ROOT, free_port, wait_for


class Service:
    """A ``framequeue`` command in the background, its stdout and stderr collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "workers.cli", *args], env=env, cwd=REPO_ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(pipe, lines), daemon=True)
                         for pipe, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    def _collect(self, pipe, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in pipe:
            lines.append(line)

    def said(self, text: str, *, stderr: bool = False) -> bool:
        return any(text in line for line in (self.stderr if stderr else self.stdout))

    def stop(self, signal_number: int = signal.SIGTERM) -> int:
        """Signal it and wait for it to exit (and its output to be read); its exit code."""
        self.process.send_signal(signal_number)
        code = self.process.wait(60)
        for reader in self._readers:
            reader.join(10)
        return code


@pytest.fixture
def env(settings: Settings) -> Iterator[dict[str, str]]:
    """The session's Redis under a namespace of the test's own (no worker serves it), with no token or secret."""
    isolated = settings.model_copy(update={"namespace": f"cli-{uuid.uuid4().hex[:8]}"})
    environment = settings_env(isolated)
    for name in ("FRAMEQUEUE_API_TOKEN", "FRAMEQUEUE_WEBHOOK_SECRET"):
        environment.pop(name, None)
    yield environment


def test_webhooks_without_a_secret_says_so_and_idles_until_stopped(env: dict[str, str]) -> None:
    service = Service(env, "webhooks")

    wait_for(lambda: service.said("FRAMEQUEUE_WEBHOOK_SECRET is not set, so no webhook is sent; idling"), 60,
             "the line saying no webhook is sent")

    assert service.process.poll() is None, "it exited instead of idling"
    assert service.stop() == 0
    assert "".join(service.stderr) == ""


def test_webhooks_with_a_malformed_secret_is_refused_in_one_line(env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "workers.cli", "webhooks"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**env, "FRAMEQUEUE_WEBHOOK_SECRET": "whsec_not base64!"})

    assert done.returncode == 78, done.stderr
    assert done.stderr.splitlines() == ["framequeue: FRAMEQUEUE_WEBHOOK_SECRET: what follows whsec_ is not base64"]


def test_the_api_without_a_token_warns_in_one_line_and_serves_refusals(env: dict[str, str]) -> None:
    port = free_port()
    service = Service(env, "api", "--port", str(port))
    try:
        wait_for(lambda: service.said("Uvicorn running", stderr=True), 120, "uvicorn to listen")

        warnings = [line for line in service.stderr if "FRAMEQUEUE_API_TOKEN" in line]
        assert warnings == ["api: FRAMEQUEUE_API_TOKEN is not set: every request to /v1, /metrics and the dashboard "
                            "is refused (set one, or run framequeue dev, which makes one)\n"]
        assert requests.get(f"http://127.0.0.1:{port}/v1/jobs", timeout=10).status_code == 401
    finally:
        service.stop()


def test_submit_wait_with_no_worker_names_the_missing_one_and_ctrl_c_is_one_line_and_exit_130(
    env: dict[str, str]
) -> None:
    service = Service(env, "submit", "a heron", "--width", "64", "--height", "64", "--wait", "--no-enhance")

    wait_for(lambda: service.said("hint: no live worker serves the prompt_enhance stage", stderr=True), 120, "the hint")
    code = service.stop(signal.SIGINT)

    assert code == 130
    assert service.stderr[-1] == "framequeue: interrupted\n"
    assert not service.said("Traceback", stderr=True)


def test_a_settings_file_that_is_missing_is_not_needed(env: dict[str, str], tmp_path: Path) -> None:
    """``.env`` is optional: a directory without one runs commands on the environment alone."""
    done = subprocess.run([sys.executable, "-m", "workers.cli", "jobs"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO_ROOT)})

    assert done.returncode == 0, done.stderr
    assert "no job matches" in done.stdout
