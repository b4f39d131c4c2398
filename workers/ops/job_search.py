"""Finding jobs in the job index, newest first, a page at a time: by id, prompt text, batch, state, kind, stage
and tenant.

The index (``JobStatusStore.index_key``) is a sorted set of job ids scored by creation time; a
batch's jobs share one score, and Redis orders those by id. A page ends with a cursor naming the
last entry it looked at (``<score>:<job id>``); the next page starts at that entry's rank plus
one, read afresh, so jobs accepted meanwhile never shift or repeat a page. A search for one
tenant's jobs reads that tenant's index (``JobStatusStore.tenant_index_key``), scored alike.
Filters read five fields of each record, pipelined a chunk at a time, and a page looks at no more
than ``SCAN_WINDOW`` entries: a rare match ends a page early, with a cursor to search on from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from queue_config.tenants import OPERATOR_TENANT
from workers.jobs.record import TERMINAL_STATES, JobRecord, JobStatusStore

#: Index entries one page looks at, at most.
SCAN_WINDOW = 5000
#: Index entries read per round trip.
CHUNK = 500


class BadCursor(ValueError):
    """A cursor no page ended with."""


@dataclass(frozen=True)
class JobQuery:
    """What to look for; an empty field matches every job."""

    #: Case-insensitive: part of the job's id or of its prompt.
    text: str = ""
    batch_id: str = ""
    state: str = ""
    kind: str = ""
    #: Only unfinished jobs whose current stage is this one.
    stage: str = ""
    #: The tenant that submitted the job (``operator`` for the operator's own).
    tenant: str = ""

    def matches(self, job_id: str, fields: list[str | None]) -> bool:
        state, kind, stage, spec_json, tenant = fields
        if state is None or (self.state and state != self.state) or (self.kind and kind != self.kind):
            return False
        if self.stage and (stage != self.stage or state in TERMINAL_STATES):
            return False
        if not (self.text or self.batch_id or self.tenant):
            return True
        spec = json.loads(spec_json) if spec_json else {}
        if self.tenant and self.tenant != (tenant or spec.get("tenant") or OPERATOR_TENANT):
            return False
        needle = self.text.casefold()
        return (not self.batch_id or spec.get("batch_id") == self.batch_id) and (
            not needle or needle in job_id.casefold() or needle in str(spec.get("prompt", "")).casefold())


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobRecord]
    #: Where the next page starts; "" when the index has nothing older.
    next_cursor: str
    #: Index entries this page looked at, and whether it stopped at ``SCAN_WINDOW`` before filling up.
    scanned: int
    window_spent: bool


def search_jobs(status: JobStatusStore, query: JobQuery, *, limit: int = 50, cursor: str = "",
                scan_window: int = SCAN_WINDOW) -> JobPage:
    """Up to ``limit`` jobs matching ``query``, newest first, after ``cursor`` (from the newest when empty).

    Raises:
      BadCursor: ``cursor`` is not one a page ended with.
    """
    index = status.tenant_index_key(query.tenant)
    start = _start_of(status, index, cursor) if cursor else 0
    found: list[JobRecord] = []
    scanned, last = 0, ""
    while len(found) < limit and scanned < scan_window:
        first = start + scanned
        entries = cast("list[tuple[str, float]]", status.client.zrevrange(
            index, first, first + min(CHUNK, scan_window - scanned) - 1, withscores=True))
        if not entries:
            return JobPage(found, "", scanned, window_spent=False)
        pipe = status.client.pipeline(transaction=False)
        for job_id, _ in entries:
            pipe.hmget(status.job_key(job_id), ["state", "kind", "stage", "spec", "tenant"])
        for (job_id, score), fields in zip(entries, pipe.execute(), strict=True):
            scanned, last = scanned + 1, f"{score!r}:{job_id}"
            if query.matches(job_id, fields) and (record := status.get(job_id)) is not None:
                found.append(record)
                if len(found) == limit:
                    break
    more = status.client.zrevrange(index, start + scanned, start + scanned)
    return JobPage(found, last if more else "", scanned, window_spent=len(found) < limit)


def _start_of(status: JobStatusStore, index: str, cursor: str) -> int:
    """The rank after the cursor's entry; if that job has left the index, the first entry not newer than it."""
    score, _, job_id = cursor.partition(":")
    try:
        created_at = float(score)
    except ValueError:
        created_at = float("nan")
    if not job_id or created_at != created_at:
        raise BadCursor(f"not a cursor of a page of jobs: {cursor[:80]!r}")
    rank = status.client.zrevrank(index, job_id)
    if rank is not None:
        return int(cast(int, rank)) + 1
    return int(cast(int, status.client.zcount(index, f"({created_at!r}", "+inf")))
