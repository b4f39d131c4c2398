"""The overview's health rows: each stage queue's backlog and last hour, and why unfinished jobs wait.

Every read is bounded: a few commands per queue, the sixty minute hashes of ``stage_stats``, and
at most ``WAITING_SCAN_MAX`` unfinished jobs for the wait reasons (the oldest first).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import cast

from workers.jobs.record import JobStatusStore
from workers.jobs.stage_stats import last_hour
from workers.ops.queue_ages import oldest_ready_ages_s
from workers.ops.queues import queue_stats

#: Unfinished jobs read for the wait reasons, at most (the reconciler's set, oldest first).
WAITING_SCAN_MAX = 2000
#: The changing prefix of a put-back reason ("waiting 1200 ms: "), dropped so that like reasons group.
_WAIT_PREFIX = re.compile(r"^waiting \d+ ms: ")


@dataclass(frozen=True)
class StageRow:
    """One stage queue at a glance: what waits, what runs, what died, how fast it went in the last hour."""

    queue: str
    stage: str
    #: The catalog model whose queue this is ("" for a stage that runs none).
    model: str
    batch: bool
    ready: int
    delayed: int
    #: Fetched by a worker and not yet acknowledged.
    running: int
    dead: int
    #: Seconds the oldest ready message has waited (0 when none waits).
    oldest_age_s: float
    p50_s: float | None
    p95_s: float | None
    succeeded: int
    failed: int


@dataclass(frozen=True)
class WaitReasons:
    """Why unfinished jobs wait, by reason, most common first, from the jobs looked at."""

    counts: list[tuple[str, int]]
    #: Unfinished jobs looked at, and how many there are in all.
    scanned: int
    unfinished: int


def stage_rows(status: JobStatusStore) -> list[StageRow]:
    """A row for every stage queue, interactive and batch, in stage order."""
    ages = oldest_ready_ages_s(status)
    windows = {window.queue: window for window in last_hour(status.client, status.namespace)}
    rows = []
    for queue in queue_stats(status):
        window = windows.get(queue.name)
        rows.append(StageRow(
            queue.name, queue.stage, queue.model or "", queue.batch, queue.ready, queue.delayed, queue.in_flight,
            queue.dead,
            ages.get(queue.name, 0.0), window.p50_s if window else None, window.p95_s if window else None,
            window.succeeded if window else 0, window.failed if window else 0,
        ))
    return rows


def wait_reasons(status: JobStatusStore, scan_max: int = WAITING_SCAN_MAX) -> WaitReasons:
    """The reasons recorded by jobs in the ``waiting`` state (a put-back's: quota, key, slot, window)."""
    ids = cast("list[str]", status.client.zrange(status.active_key, 0, scan_max - 1))
    pipe = status.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(status.job_key(job_id), ["state", "wait_reason"])
    reasons = Counter(_WAIT_PREFIX.sub("", reason or "(no reason recorded)")
                      for state, reason in (pipe.execute() if ids else []) if state == "waiting")
    return WaitReasons(reasons.most_common(), len(ids), int(status.client.zcard(status.active_key)))
