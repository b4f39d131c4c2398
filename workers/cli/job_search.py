"""Find jobs in the job index, newest first, a page at a time, by state, kind, batch or text.

The index (``{namespace}:jobs``) scores each job id by when it was accepted. A page ends with a
cursor, ``<score>:<job id>`` of its last job, and the next page starts just after it: jobs
accepted meanwhile never shift a page the way an offset would. Filters are read from the records
(state, kind and the spec, in one pipelined round trip per chunk) before the whole records are
read for the jobs that match; a search stops after ``scan_limit`` index entries, so a needle in a
large haystack returns a short page and a cursor to go on from rather than a long wait.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from workers.jobs.record import JobRecord, JobStatusStore

#: Index entries read per round trip.
CHUNK = 200
#: Index entries one search looks at, at most.
SCAN_LIMIT = 20_000


@dataclass(frozen=True)
class JobQuery:
    """What to look for; every field left empty matches every job."""

    state: str = ""
    kind: str = ""
    batch_id: str = ""
    #: Case-insensitive: part of the job's id or of its prompt.
    text: str = ""

    def matches(self, job_id: str, state: str | None, kind: str | None, spec_json: str | None) -> bool:
        if state is None or (self.state and state != self.state) or (self.kind and kind != self.kind):
            return False
        if not (self.batch_id or self.text):
            return True
        spec = json.loads(spec_json) if spec_json else {}
        if self.batch_id and spec.get("batch_id") != self.batch_id:
            return False
        needle = self.text.casefold()
        return not needle or needle in job_id.casefold() or needle in str(spec.get("prompt", "")).casefold()


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobRecord]
    #: Where the next page starts; "" when the index has no more jobs.
    next_cursor: str


class BadCursor(ValueError):
    """A cursor that no page ended with."""


def search_jobs(status: JobStatusStore, query: JobQuery, *, limit: int = 20, cursor: str = "",
                scan_limit: int = SCAN_LIMIT) -> JobPage:
    """Up to ``limit`` jobs matching ``query``, newest first, after ``cursor`` (the start when empty)."""
    after_score, after_id = parse_cursor(cursor) if cursor else (float("inf"), "")
    found: list[JobRecord] = []
    scanned, last = 0, cursor
    while len(found) < limit and scanned < scan_limit:
        entries = _entries_after(status, after_score, after_id)
        if not entries:
            return JobPage(found, "")
        pipe = status.client.pipeline(transaction=False)
        for job_id, _ in entries:
            pipe.hmget(status.job_key(job_id), ["state", "kind", "spec"])
        for (job_id, score), (state, kind, spec) in zip(entries, pipe.execute(), strict=True):
            after_score, after_id, scanned = score, job_id, scanned + 1
            last = f"{score!r}:{job_id}"
            if query.matches(job_id, state, kind, spec) and (record := status.get(job_id)) is not None:
                found.append(record)
                if len(found) == limit:
                    break
    more = bool(_entries_after(status, after_score, after_id, count=1))
    return JobPage(found, last if more else "")


def parse_cursor(cursor: str) -> tuple[float, str]:
    score, colon, job_id = cursor.partition(":")
    try:
        if not colon or not job_id:
            raise ValueError
        return float(score), job_id
    except ValueError:
        raise BadCursor(f"not a cursor a page of jobs ended with: {cursor[:80]!r}") from None


def _entries_after(status: JobStatusStore, score: float, job_id: str, count: int = CHUNK) -> list[tuple[str, float]]:
    """Index entries after (score, job_id) in newest-first order: a lower score, or the same score and a lower id."""
    top = "+inf" if score == float("inf") else repr(score)
    entries = cast("list[tuple[str, float]]", status.client.zrevrangebyscore(
        status.index_key, top, "-inf", start=0, num=count + _ties(status, score, job_id), withscores=True))
    return [(member, s) for member, s in entries if s < score or (s == score and member < job_id)][:count]


def _ties(status: JobStatusStore, score: float, job_id: str) -> int:
    """How many entries share ``score`` and come at or before ``job_id``: they are read again and dropped."""
    if not job_id:
        return 0
    return int(status.client.zcount(status.index_key, repr(score), repr(score)))
