"""The dashboard's worker list, over HTTP and in a real browser, with a live worker running a job.

The worker is a dramatiq worker in this process (one thread, the registry middleware) on a
namespace of its own; its ``prompt_enhance`` actor holds the job it was given until the test lets
it go, so the job is certainly running while the page is read.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.api.test_dashboard import BROWSER_DIR, TOKEN, browser_ready, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.queues import PROMPT_QUEUE
from tests.servers import wait_for
from workers.jobs.submit import submit_job
from workers.middleware.registry import WorkerRegistry
from workers.ops.workers import WorkerEntry, list_workers

#: The first stage of an image job: the one the held job is running.
HELD_STAGE = "prompt_enhance"
HELD_QUEUE = PROMPT_QUEUE


@dataclass
class HeldJob:
    """A live worker, and the id of the job it is running until ``release`` is set."""

    job_id: str
    release: threading.Event
    worker: dramatiq.Worker


@contextmanager
def worker_holding_a_job(ns: Namespace) -> Iterator[HeldJob]:
    broker = RedisBroker(client=redis.Redis.from_url(ns.settings.redis_url), namespace=ns.settings.namespace)
    broker.add_middleware(WorkerRegistry(describe_models=lambda stages: {"profile": "tiny", "device": "cpu"},
                                         interval_ms=200, stale_after_ms=30_000, ttl_ms=60_000))
    release, started = threading.Event(), threading.Event()

    def hold(payload: dict[str, Any]) -> None:
        started.set()
        release.wait(120)

    dramatiq.actor(hold, broker=broker, actor_name=HELD_QUEUE, queue_name=HELD_QUEUE, max_retries=0)
    spec = JobSpec(prompt="a heron waiting", kind=JobKind.image, width=64, height=64, steps=1)
    submit_job(ns.broker, ns.status, spec)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert started.wait(60), "the worker did not take the job"
        # The registry's running-job write is queued for a background writer: wait until it lands.
        wait_for(lambda: any(job.job_id == spec.id for entry in registered(ns) for job in entry.current_jobs),
                 60, "the registry to list the running job")
        yield HeldJob(spec.id, release, worker)
    finally:
        release.set()
        worker.stop()


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[Namespace, str]]:
    for ns in cleaned_namespace(settings, "workers-page"):
        with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url:
            yield ns, url


def registered(ns: Namespace) -> list[WorkerEntry]:
    return list_workers(ns.status.client, ns.settings.namespace)


def test_the_workers_page_lists_a_live_worker_with_the_job_it_runs(served: tuple[Namespace, str]) -> None:
    ns, url = served
    with worker_holding_a_job(ns) as held, signed_in(url) as operator:
        page = operator.get("/dashboard/workers").text
        listed = operator.get("/dashboard/workers?format=json").json()["workers"]
    assert f'data-host="{socket.gethostname()}" data-pid="{os.getpid()}"' in page
    assert f'data-stages="{HELD_STAGE}" data-stale="no"' in page
    assert f'href="/dashboard/jobs/{held.job_id}"' in page and 'href="/dashboard/workers"' in page
    [worker] = listed
    assert (worker["host"], worker["pid"], worker["stages"]) == (socket.gethostname(), os.getpid(), [HELD_STAGE])
    assert worker["queues"] == [HELD_QUEUE] and worker["threads"] == 1 and worker["stale"] is False
    assert worker["models"] == {"profile": "tiny", "device": "cpu"}
    assert [(job["job_id"], job["stage"]) for job in worker["current_jobs"]] == [(held.job_id, HELD_STAGE)]
    # Stopped cleanly, the worker has left the list.
    assert registered(ns) == []
    assert "No worker has registered." in operator_page(url)


def operator_page(url: str) -> str:
    with signed_in(url) as operator:
        return operator.get("/dashboard/workers").text


@pytest.mark.timeout(300)
def test_an_operator_sees_the_worker_and_its_running_job_in_a_real_browser(
    served: tuple[Namespace, str], artifacts_dir: Path
) -> None:
    if reason := browser_ready():
        pytest.skip(reason)
    ns, url = served
    with worker_holding_a_job(ns) as held:
        config = {"baseUrl": url, "token": TOKEN, "jobId": held.job_id, "artifactsDir": str(artifacts_dir)}
        run = subprocess.run(["node", "workers.mjs", json.dumps(config)], cwd=BROWSER_DIR, capture_output=True,
                             text=True, timeout=240, check=False)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        held.release.set()
        wait_for(lambda: not any(entry.current_jobs for entry in registered(ns)), 30, "the job to end")

    assert seen["host"] == socket.gethostname() and seen["pid"] == str(os.getpid())
    assert seen["stages"] == HELD_STAGE and seen["badge"] == "alive"
    assert seen["jobLinks"] == [held.job_id] and seen["jobPageUrl"] == f"/dashboard/jobs/{held.job_id}"
    assert held.job_id in seen["jobPageTitle"]
