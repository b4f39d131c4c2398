"""Chaos: processes SIGKILLed again and again while they work; every accepted job ends once, nothing is lost.

Each test prints a line with what it did (see ``-s``): jobs or entries, kills, and the outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import redis

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.queues import PROMPT_QUEUE
from tests.servers import REPO_ROOT, WorkerProcess, wait_for
from tests.workers.test_webhooks import LOOPBACK, LOOPBACK_ENV, SECRET, hooked_job, receiving, serving
from workers import ops
from workers.broker import build_broker
from workers.doors import webhooks
from workers.doors.streams import ensure_group
from workers.doors.webhooks import WebhookSender
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.jobs.submit import submit_job

#: Worker processes SIGKILLed in the soak, each once it had moved some job on a stage.
WORKER_KILLS = 5
#: Intake processes SIGKILLed, each once it had answered at least one entry of its wave.
INTAKE_KILLS = 6
ENTRIES_PER_WAVE = 10
#: Webhook sender processes SIGKILLed, each once it had delivered at least one event of its wave.
SENDER_KILLS = 5


def own_namespace(settings: Settings, name: str) -> tuple[Settings, JobStatusStore]:
    namespaced = settings.model_copy(update={"namespace": f"{name}-{uuid.uuid4().hex[:6]}"})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    return namespaced, JobStatusStore(client, namespaced.namespace)


def progress(status: JobStatusStore, job_ids: list[str]) -> int:
    """Stages finished, summed over the jobs (it only grows)."""
    return sum(len(record.timings_s) for job_id in job_ids if (record := status.get(job_id)) is not None)


def test_workers_killed_again_and_again_mid_stage_lose_no_job_and_run_none_twice(
    settings: Settings, tiny_profile, artifacts_dir: Path
) -> None:
    namespaced, status = own_namespace(settings, "chaos-workers")
    broker = build_broker(namespaced)
    specs = [JobSpec(prompt=f"a windmill in a storm {n}", kind=JobKind.video, width=64, height=64, num_frames=8,
                     fps=8, enhance_prompt=False, seed=n) for n in range(8)]
    job_ids = [spec.id for spec in specs]
    for spec in specs:
        submit_job(broker, status, spec)
    started = time.monotonic()
    interrupted: Counter[str] = Counter()
    for kill in range(WORKER_KILLS):
        worker = WorkerProcess(settings_env(namespaced), artifacts_dir / f"worker-chaos-{kill}.log", "--threads", "2")
        before = progress(status, job_ids)
        wait_for(lambda b=before: progress(status, job_ids) > b, 180, "the worker to move a job on")
        running = [r.stage for job_id in job_ids if (r := status.get(job_id)) and r.state == "running"]
        worker.kill()
        interrupted.update(running)
    last = WorkerProcess(settings_env(namespaced), artifacts_dir / "worker-chaos-last.log", "--threads", "2")
    try:
        wait_for(lambda: all(status.state_of(job_id) in TERMINAL_STATES for job_id in job_ids), 300,
                 "every job to finish")
    finally:
        last.stop()

    terminal = Counter((f["job_id"], f["event"]) for _, f in status.client.xrange(status.events_key)
                       if f.get("event") in TERMINAL_STATES)
    print(f"\nworker chaos: {len(specs)} video jobs, {WORKER_KILLS} SIGKILLs (stages running at the kills: "
          f"{dict(interrupted)}), {sum(status.state_of(j) == 'succeeded' for j in job_ids)} succeeded, "
          f"done {time.monotonic() - started:.0f} s after the first submission")
    for job_id in job_ids:
        record = status.get(job_id)
        assert record is not None and record.state == "succeeded" and record.manifest_key and record.result_url
        assert terminal[(job_id, "succeeded")] == 1 and sum(n for (j, _), n in terminal.items() if j == job_id) == 1


def test_an_intake_killed_again_and_again_answers_every_entry_once_and_enqueues_each_job_once(
    settings: Settings, artifacts_dir: Path
) -> None:
    namespaced, status = own_namespace(settings, "chaos-intake")
    env = {**settings_env(namespaced), "FRAMEQUEUE_INTAKE_CLAIM_IDLE_MS": "300"}
    client, stream = status.client, f"{namespaced.namespace}:intake"
    entry_ids: list[str] = []

    def receipts() -> int:
        pipe = client.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.exists(f"{stream}:receipt:{entry_id}")
        return sum(pipe.execute())

    def start_intake(name: str) -> subprocess.Popen[bytes]:
        with open(artifacts_dir / f"intake-chaos-{name}.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "workers.cli", "intake"], env=env, cwd=REPO_ROOT,
                                    stdout=log, stderr=subprocess.STDOUT)

    for kill in range(INTAKE_KILLS):
        intake = start_intake(str(kill))
        before = receipts()
        for n in range(ENTRIES_PER_WAVE):
            job = {"prompt": f"a paper crane {kill}-{n}", "kind": "image", "width": 64, "height": 64}
            entry_ids.append(client.xadd(stream, {"job": json.dumps(job)}))
        wait_for(lambda b=before: receipts() > b, 60, "the intake to answer an entry of its wave", interval_s=0.01)
        intake.send_signal(signal.SIGKILL)
        intake.wait(10)
    last = start_intake("last")
    try:
        wait_for(lambda: receipts() == len(entry_ids), 120, "a receipt for every entry")
    finally:
        last.terminate()
        last.wait(10)

    answers = [client.hgetall(f"{stream}:receipt:{entry_id}") for entry_id in entry_ids]
    queued = [ops.job_id_of(body) for body in ops.ready_messages(status, PROMPT_QUEUE, limit=1000)]
    print(f"\nintake chaos: {len(entry_ids)} entries, {INTAKE_KILLS} SIGKILLs, "
          f"{sum(a['status'] == 'accepted' for a in answers)} accepted, {len(queued)} messages queued, "
          f"{len(set(queued))} distinct jobs")
    assert [answer for answer in answers if answer["status"] != "accepted"] == []
    assert sorted(queued) == sorted(answer["job_id"] for answer in answers)  # each job once, none missing
    assert client.xpending(stream, "intake")["pending"] == 0 and client.xlen(stream) == 0


def test_a_webhook_sender_killed_again_and_again_delivers_every_event_at_least_once(
    settings: Settings, artifacts_dir: Path
) -> None:
    _, status = own_namespace(settings, "chaos-webhooks")
    ensure_group(status.client, status.events_key, webhooks.GROUP, start_id="$")  # as the sender does
    env = {**settings_env(settings), "FRAMEQUEUE_NAMESPACE": status.namespace, "FRAMEQUEUE_WEBHOOK_SECRET": SECRET,
           **LOOPBACK_ENV}
    event_ids: list[str] = []
    with receiving(failures=0) as receiver:
        for kill in range(SENDER_KILLS):
            with open(artifacts_dir / f"webhooks-chaos-{kill}.log", "wb") as log:
                sender = subprocess.Popen([sys.executable, "-m", "workers.cli", "webhooks"], env=env, cwd=REPO_ROOT,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            before = len(receiver.deliveries)
            event_ids += [hooked_job(status, receiver.url, f"a kite, wave {kill}, {n}")[1] for n in range(6)]
            wait_for(lambda b=before: len(receiver.deliveries) > b, 60, "the sender to deliver one of its wave",
                     interval_s=0.01)
            os.killpg(sender.pid, signal.SIGKILL)
            sender.wait(10)
        last = WebhookSender(status, SECRET, policy=LOOPBACK)
        with serving(last):
            wait_for(lambda: {e["id"] for e in receiver.accepted_events()} >= set(event_ids), 60,
                     "every event delivered")
            wait_for(lambda: not status.client.exists(last.retry_key), 30, "every delivery settled")

    delivered = Counter(e["id"] for e in receiver.accepted_events())
    print(f"\nwebhook chaos: {len(event_ids)} events, {SENDER_KILLS} SIGKILLs, {sum(delivered.values())} deliveries, "
          f"{sum(n - 1 for n in delivered.values())} repeats (same webhook-id)")
    assert set(delivered) == set(event_ids)
    assert status.client.xpending(status.events_key, webhooks.GROUP)["pending"] == 0
    assert [status.client.hget(status.job_key(j), "webhook_error") for j in
            {e["job_id"] for e in receiver.accepted_events()}] == [None] * len(event_ids)
