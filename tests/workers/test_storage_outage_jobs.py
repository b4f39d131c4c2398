"""Jobs through a storage outage: a worker whose S3 endpoint is cut for 30 s finishes every job, once.

The worker's S3 endpoint is a fault proxy in front of the session's S3 server. Video jobs are
submitted; once one of them has written to storage, storage is cut for ``OUTAGE_S`` (new connections
refused, open ones reset) and then restored. The stages' reads and writes wait the outage out
(``storage/retry.py``), so every job succeeds with one attempt per stage: no retry spent, nothing
computed twice.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import redis

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.fault_proxy import FaultProxy
from tests.servers import WorkerProcess, wait_for
from workers.broker import build_broker
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job

#: How long storage is cut while the jobs run: the outage of the issue.
OUTAGE_S = 30.0
#: Video jobs submitted at once.
JOBS = 6
#: Generous: the worker starts and loads its tiny models cold, on a slow 2-core machine.
START_TIMEOUT_S = 180
FINISH_TIMEOUT_S = 180


def tiny_video_jobs(count: int) -> list[JobSpec]:
    return [
        JobSpec(prompt=f"a lighthouse in the fog, take {n}", kind=JobKind.video, width=64, height=64, num_frames=4,
                fps=4, steps=1, enhance_prompt=False, seed=n)
        for n in range(count)
    ]


def test_jobs_running_through_a_30_s_storage_outage_all_succeed_without_a_stage_rerun(
    settings: Settings, tiny_profile, artifacts_dir: Path  # type: ignore[no-untyped-def]
) -> None:
    target = urlsplit(settings.s3_endpoint_url)
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 80) as proxy:
        isolated = settings.model_copy(update={
            "namespace": f"framequeue-outage-{uuid.uuid4().hex[:8]}", "s3_endpoint_url": proxy.url,
            "s3_bucket": "framequeue-outage",
        })
        status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), isolated.namespace)
        worker = WorkerProcess(settings_env(isolated), artifacts_dir / "worker-storage-outage.log",
                               "--processes", "1", "--threads", "4")
        try:
            specs = tiny_video_jobs(JOBS)
            broker = build_broker(isolated)
            for spec in specs:
                submit_job(broker, status, spec)

            def records() -> list[JobRecord]:
                assert worker.process.poll() is None, f"the worker exited: see {worker.log_path}"
                return [record for spec in specs if (record := status.get(spec.id)) is not None]

            def all_finished() -> list[JobRecord] | None:
                found = records()
                return found if len(found) == JOBS and all(record.finished for record in found) else None

            wait_for(lambda: any(record.artifacts for record in records()), START_TIMEOUT_S,
                     "a job to have written to storage", interval_s=0.02)
            proxy.cut()
            time.sleep(OUTAGE_S)  # the outage itself, not a wait for something to happen
            unfinished_at_restore = [record.id for record in records() if not record.finished]
            proxy.restore()
            restored_at = time.monotonic()

            finished = wait_for(all_finished, FINISH_TIMEOUT_S, "every job to finish", interval_s=0.2)
            recovered_s = time.monotonic() - restored_at
        finally:
            worker.stop()

    log = worker.log_text()
    print(f"outage {OUTAGE_S:.0f} s, {JOBS} jobs, {len(unfinished_at_restore)} in flight at restore, "
          f"all finished {recovered_s:.1f} s after it")
    assert [(r.id, r.state, r.error) for r in finished if r.state != "succeeded"] == []
    assert unfinished_at_restore, "the outage caught no job in flight"
    assert {r.id: r.attempts for r in finished if set(r.attempts.values()) != {1}} == {}
    assert all(len(r.attempts) == len(r.stages) for r in finished)
    job_ids = {spec.id for spec in specs}
    entries = cast(list[tuple[str, dict[str, str]]], status.client.xrange(status.events_key))
    events = [fields for _, fields in entries if fields["job_id"] in job_ids]
    assert [event for event in events if event["event"] == "retrying"] == []
    storage_lines = [line for line in log.splitlines() if "[storage.retry]" in line]
    assert len(storage_lines) == 2, storage_lines  # one when storage went, one when it came back
    assert "unreachable" in storage_lines[0] and "reachable again" in storage_lines[1]
