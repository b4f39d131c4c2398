"""framequeue jobs, cancel, requeue and keys, run as an operator would against a real Redis and workers.

Each test has a namespace of its own that no session worker serves, so a job stays where the test
puts it; the requeue test then starts a worker there and sees the job through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queue_config.jobs import JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.queues import PROMPT_QUEUE
from tests.servers import REPO_ROOT, WorkerProcess, wait_for
from workers.broker import build_broker
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job


class Namespace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"namespace": f"cli-jobs-{uuid.uuid4().hex[:8]}"})
        self.status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True),
                                     self.settings.namespace)
        self.broker = build_broker(self.settings)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=settings_env(self.settings),
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    def submit(self, prompt: str, **fields: object) -> str:
        spec = JobSpec(**{"prompt": prompt, "width": 64, "height": 64, "enhance_prompt": False, **fields})
        submit_job(self.broker, self.status, spec)
        return spec.id


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    namespace = Namespace(settings)
    yield namespace
    for key in namespace.status.client.scan_iter(match=f"{namespace.settings.namespace}:*", count=1000):
        namespace.status.client.delete(key)


def listed(ns: Namespace, *args: str) -> tuple[list[str], str | None]:
    done = ns.run("jobs", "--json", *args)
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    return [job["id"] for job in page["jobs"]], page["next_cursor"]


def test_jobs_pages_newest_first_with_a_cursor_that_later_jobs_do_not_shift(ns: Namespace) -> None:
    ids = [ns.submit(f"a heron number {n}") for n in range(5)]

    first, cursor = listed(ns, "--limit", "2")
    ns.submit("a job accepted between two pages")
    second, cursor2 = listed(ns, "--limit", "2", "--cursor", cursor or "")
    third, cursor3 = listed(ns, "--limit", "2", "--cursor", cursor2 or "")

    assert first + second + third == ids[::-1]
    assert cursor and cursor2 and cursor3 is None


def test_jobs_filters_by_state_kind_batch_and_text_in_the_id_or_prompt(ns: Namespace) -> None:
    heron = ns.submit("A Grey HERON at dawn")
    fox = ns.submit("a fox in snow", batch_id="b-night")
    video = ns.submit("a heron taking off", kind="video", num_frames=2)
    ns.status.cancel(fox)

    assert listed(ns, "--search", "heron")[0] == [video, heron]
    assert listed(ns, "--search", heron[:10])[0] == [heron]
    assert listed(ns, "--kind", "video")[0] == [video]
    assert listed(ns, "--batch", "b-night")[0] == [fox]
    assert listed(ns, "--state", "cancelled")[0] == [fox]
    assert listed(ns, "--state", "queued", "--search", "HERON", "--kind", "image")[0] == [heron]
    ns.status.stage_started(heron, "image", 1)
    assert listed(ns, "--stage", "image")[0] == [heron]


def test_jobs_prints_a_table_by_default_and_the_cursor_to_go_on_from(ns: Namespace) -> None:
    ids = [ns.submit(f"a [bold]heron[/bold] {n}") for n in range(3)]

    shown = ns.run("jobs", "--limit", "2")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["id", "state", "kind", "stage", "created", "batch", "prompt"]
    assert [line.split()[0] for line in lines[2:4]] == ids[:0:-1]
    assert "a [bold]heron[/bold] 2" in lines[2]
    assert lines[-1].startswith("more: --cursor ") and ids[1] in lines[-1]


def test_a_cursor_no_page_ended_with_is_refused_in_one_line(ns: Namespace) -> None:
    done = ns.run("jobs", "--cursor", "yesterday")

    assert done.returncode == 2 and done.stderr.startswith("framequeue: --cursor: not a cursor"), done.stderr


def test_cancel_cancels_an_unfinished_job_once_and_names_what_it_cannot_cancel(ns: Namespace) -> None:
    job_id = ns.submit("a heron")

    first, again, unknown = ns.run("cancel", job_id), ns.run("cancel", job_id), ns.run("cancel", "no-such-job")

    assert first.returncode == 0 and first.stdout == f"job {job_id}: cancelled\n"
    assert ns.status.state_of(job_id) == "cancelled"
    assert again.returncode == 1
    assert again.stderr == f"framequeue: job {job_id} has already finished (cancelled); nothing to cancel\n"
    assert unknown.returncode == 1 and unknown.stderr == "framequeue: no job no-such-job\n"


def dead_letter_first_message(ns: Namespace, job_id: str) -> str:
    """Fail the job's first message as a worker that gave up on it does: on the queue's dead letters."""
    [body] = ns.broker.do_fetch(PROMPT_QUEUE, 1)
    message = json.loads(body)
    ns.broker.do_nack(PROMPT_QUEUE, message["options"]["redis_message_id"])
    redis_id = str(message["options"]["redis_message_id"])
    ns.status.stage_failed(job_id, "prompt_enhance", "RuntimeError: the model fell over", message["message_id"],
                           dead_letter=f"{PROMPT_QUEUE}\t{redis_id}")
    return redis_id


def test_requeue_runs_a_failed_jobs_dead_letter_again_to_success(
    ns: Namespace, tiny_profile, artifacts_dir: Path  # type: ignore[no-untyped-def]
) -> None:
    job_id = ns.submit("a heron", enhance_prompt=True)
    dead_letter_first_message(ns, job_id)
    assert ns.status.state_of(job_id) == "failed"

    requeued = ns.run("requeue", job_id)

    assert requeued.returncode == 0, requeued.stderr
    assert ns.status.state_of(job_id) == "queued"
    assert ns.status.client.zcard(f"{ns.settings.namespace}:{PROMPT_QUEUE}.XQ") == 0
    worker = WorkerProcess(settings_env(ns.settings), artifacts_dir / "worker-cli-requeue.log", "--threads", "2")
    try:
        wait_for(lambda: ns.status.state_of(job_id) == "succeeded", 240, "the requeued job to succeed")
    finally:
        worker.stop()
    assert ns.run("requeue", job_id).returncode == 1


def test_requeue_by_queue_and_broker_id_puts_the_message_back(ns: Namespace) -> None:
    job_id = ns.submit("a heron", enhance_prompt=True)
    redis_id = dead_letter_first_message(ns, job_id)

    wrong_queue = ns.run("requeue", redis_id, "--queue", "nowhere")
    requeued = ns.run("requeue", redis_id, "--queue", PROMPT_QUEUE)
    again = ns.run("requeue", redis_id, "--queue", PROMPT_QUEUE)

    assert wrong_queue.returncode == 2 and "--queue: no queue nowhere" in wrong_queue.stderr
    assert requeued.returncode == 0, requeued.stderr
    assert ns.status.client.lrange(f"{ns.settings.namespace}:{PROMPT_QUEUE}", 0, -1) != []
    assert ns.status.state_of(job_id) == "queued"
    assert again.returncode == 1 and "no dead letter" in again.stderr


def test_requeue_of_a_job_that_has_not_failed_is_refused(ns: Namespace) -> None:
    job_id = ns.submit("a heron")

    done = ns.run("requeue", job_id)

    assert done.returncode == 1
    assert done.stderr == f"framequeue: job {job_id} is queued, not failed; nothing to requeue\n"


def test_keys_disable_and_enable_a_key_by_fingerprint_and_list_it_as_json_or_a_table(ns: Namespace) -> None:
    fingerprint = uuid.uuid4().hex[:12]
    ns.status.client.hset(f"{ns.settings.namespace}:keys:sim:{fingerprint}", mapping={"requests": 3, "successes": 3})

    disabled = ns.run("keys", "disable", fingerprint)
    listed_disabled = json.loads(ns.run("keys", "--json").stdout)
    enabled = ns.run("keys", "enable", fingerprint)
    table = ns.run("keys")
    unknown = ns.run("keys", "disable", "0" * 12)
    missing = ns.run("keys", "enable")

    assert disabled.returncode == 0 and disabled.stdout == f"key {fingerprint}: disabled\n"
    assert [(k["fingerprint"], k["state"], k["requests"]) for k in listed_disabled] == [(fingerprint, "disabled", 3)]
    assert enabled.returncode == 0 and enabled.stdout == f"key {fingerprint}: enabled\n"
    [row] = [line.split() for line in table.stdout.splitlines() if fingerprint in line]
    assert row[:3] == ["sim", fingerprint, "ok"]
    assert unknown.returncode == 1 and "no key with fingerprint" in unknown.stderr
    assert missing.returncode == 2 and "needs the key's FINGERPRINT" in missing.stderr


def test_batch_status_is_a_table_by_default_and_json_on_request(ns: Namespace, tmp_path: Path) -> None:
    path = tmp_path / "night.jsonl"
    path.write_text('{"prompt": "a fox", "width": 64, "height": 64}\n{"prompt": "a hare", "width": 64, "height": 64}\n')
    submitted = ns.run("batch", "submit", str(path), "--name", "b-table")
    assert submitted.returncode == 0, submitted.stderr

    table, as_json = ns.run("batch", "status", "b-table"), ns.run("batch", "status", "b-table", "--json")

    assert json.loads(as_json.stdout)["total"] == 2
    rows = {line.split()[0]: line.split()[1:] for line in table.stdout.splitlines() if line.strip()}
    assert rows["batch"] == ["b-table"] and rows["total"] == ["2"] and rows["unfinished"] == ["2"]
    assert "succeeded" in table.stdout and "{" not in table.stdout
