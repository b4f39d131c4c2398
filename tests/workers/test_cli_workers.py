"""``framequeue workers`` against the session's worker (one process serving every stage)."""

from __future__ import annotations

import json
import socket

import pytest

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from queue_config.stages import STAGES
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_cli import framequeue


def listed(settings: Settings, *args: str) -> list[dict[str, object]]:
    run = framequeue(settings, "workers", "--json", *args)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def session_worker(settings: Settings, workers: WorkerProcess) -> dict[str, object]:
    """The session worker's entry, once it has registered."""
    return wait_for(lambda: next((entry for entry in listed(settings) if entry["stages"] == sorted(STAGES)), None),
                    180, "the session's worker to register")


def test_workers_json_names_each_process_with_its_stages_models_and_state(
    settings: Settings, session_worker: dict[str, object]
) -> None:
    assert session_worker["host"] == socket.gethostname() and session_worker["threads"] == 2
    served = ",".join(sorted(catalog_of(settings).models))  # every model: the worker serves every stage
    assert session_worker["stale"] is False and session_worker["models"] == {
        "profile": "tiny", "device": "cpu", "models": served}
    assert session_worker["id"] in [entry["id"] for entry in listed(settings, "--stage", "image", "--live")]


def test_workers_prints_a_table_by_default(settings: Settings, session_worker: dict[str, object]) -> None:
    run = framequeue(settings, "workers")

    assert run.returncode == 0, run.stderr
    header, *rows = [line for line in run.stdout.splitlines() if line.strip() and not line.startswith("─")]
    assert header.split()[:5] == ["host", "pid", "stages", "models", "threads"]
    [row] = [row for row in rows if f" {session_worker['pid']} " in row]
    assert row.startswith(socket.gethostname()) and "image" in row and "profile=tiny" in row and "alive" in row


def test_help_explains_every_flag(settings: Settings) -> None:
    run = framequeue(settings, "workers", "--help")

    assert run.returncode == 0
    for flag, words in {"--stage": "serve this stage", "--live": "stale", "--json": "JSON"}.items():
        assert flag in run.stdout and words in run.stdout
