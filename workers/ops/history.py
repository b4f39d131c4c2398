"""What happened lately, read from the event stream and the job index: throughput and state counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from workers.jobs.record import JobStatusStore
from workers.keys.pool import redis_now_ms

#: Events read per XRANGE call.
EVENTS_PAGE = 1000


@dataclass(frozen=True)
class MinuteCounts:
    """Jobs that ended in one minute (``start``: epoch s)."""

    start: float
    succeeded: int
    failed: int


def events_since(status: JobStatusStore, start_id: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Every event in the stream after ``start_id`` (exclusive), oldest first, a page at a time."""
    while True:
        page = cast("list[tuple[str, dict[str, str]]]",
                    status.client.xrange(status.events_key, min=f"({start_id}", max="+", count=EVENTS_PAGE))
        yield from page
        if len(page) < EVENTS_PAGE:
            return
        start_id = page[-1][0]


def throughput(status: JobStatusStore, minutes: int = 60) -> list[MinuteCounts]:
    """Jobs that succeeded and failed in each of the last ``minutes`` minutes (Redis's clock), oldest first."""
    first_ms = (int(redis_now_ms(status.client)) // 60_000 - minutes + 1) * 60_000
    counts = {"succeeded": [0] * minutes, "failed": [0] * minutes}
    for event_id, fields in events_since(status, f"{first_ms - 1}-{2**64 - 1}"):
        minute = (int(event_id.split("-")[0]) - first_ms) // 60_000
        if fields.get("event") in counts and minute < minutes:
            counts[fields["event"]][minute] += 1
    return [MinuteCounts((first_ms + 60_000 * i) / 1000, counts["succeeded"][i], counts["failed"][i])
            for i in range(minutes)]


def job_counts(status: JobStatusStore, newest: int | None = None) -> dict[str, int]:
    """How many recorded jobs (only the ``newest`` ones, when given) are in each state.

    One HGET per job, pipelined a thousand at a time: a page that refreshes itself passes ``newest``.
    """
    counts: dict[str, int] = {}
    start, total = 0, int(status.client.zcard(status.index_key)) if newest is None else newest
    while start < total and (ids := cast("list[str]", status.client.zrevrange(
            status.index_key, start, min(start + 999, total - 1)))):
        pipe = status.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(status.job_key(job_id), "state")
        for state in filter(None, pipe.execute()):
            counts[state] = counts.get(state, 0) + 1
        start += len(ids)
    return counts
