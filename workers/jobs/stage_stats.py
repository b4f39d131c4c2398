"""Per-stage run times and outcomes, summed across every worker, kept in Redis.

The job-status middleware queues these counts on the same pipeline that records a
stage's end in the job's record, so they cost no extra round trip. Each stage actor
(``image`` and ``image_batch`` apart) is counted twice:

- ``{namespace}:stage_stats`` is one hash of counters that only grow: a duration
  histogram per actor (the run times of runs that returned, in ``BUCKET_BOUNDS_S``
  buckets, with their sum) and how many runs succeeded, failed for good and were
  retried. Prometheus histograms are read from it, so they aggregate across scrapes,
  API replicas and workers, and reset only when Redis loses its data.
- ``{namespace}:stage_stats:{minute}`` holds the same counts for one wall-clock minute
  and expires ``MINUTE_TTL_S`` after its last write: "the last hour" on the dashboard
  adds up the newest sixty of them.

Fields are ``{actor}:le:{bound}`` (one histogram bucket, not cumulative), ``{actor}:sum``
and ``{actor}:{outcome}``; readers turn them into the dataclasses below.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis

from queue_config.stages import STAGES, stage_of_actor
from workers.jobs.status_writer import pipelined_script

#: Upper bounds (seconds) of the duration buckets: 10 ms to 30 min, finer where stages usually land.
BUCKET_BOUNDS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
)
#: What a run can end as: it returned, it failed for good (dead-lettered), or it raised and will be retried.
OUTCOMES = ("succeeded", "failed", "retried")
#: A minute's counts outlive the hour the dashboard shows, with room for late readers.
MINUTE_TTL_S = 2 * 3600
#: Minutes in "the last hour".
WINDOW_MINUTES = 60

Client = redis.Redis | redis.client.Pipeline
_STATS_SCRIPT = pipelined_script(Path(__file__).parent / "stage_stats.lua")


def total_key(namespace: str) -> str:
    return f"{namespace}:stage_stats"


def minute_key(namespace: str, minute: int) -> str:
    """The key of one wall-clock minute's counts (``minute``: whole minutes since the epoch)."""
    return f"{namespace}:stage_stats:{minute}"


def bucket_label(bound_s: float) -> str:
    """A bucket bound as Prometheus writes it in ``le`` (``0.01``, ``60.0``, ``+Inf``)."""
    return "+Inf" if bound_s == float("inf") else repr(float(bound_s))


def _bucket_of(duration_s: float) -> str:
    index = bisect.bisect_left(BUCKET_BOUNDS_S, duration_s)
    return bucket_label(BUCKET_BOUNDS_S[index] if index < len(BUCKET_BOUNDS_S) else float("inf"))


def record_run(pipe: Client, namespace: str, actor: str, duration_s: float, *, now_s: float | None = None) -> None:
    """Queue the counts of a run of ``actor`` that returned after ``duration_s``: one script call."""
    if stage_of_actor(actor) not in STAGES:
        return  # a message for an unknown actor must not add fields to the hash
    _count(pipe, namespace, now_s, [f"{actor}:sum", repr(duration_s), f"{actor}:le:{_bucket_of(duration_s)}",
                                    f"{actor}:succeeded"])


def record_outcome(pipe: Client, namespace: str, actor: str, outcome: str, *, now_s: float | None = None) -> None:
    """Queue one ``failed`` or ``retried`` run of ``actor`` (``succeeded`` ones go through ``record_run``)."""
    if outcome not in ("failed", "retried"):
        raise ValueError(f"record_outcome takes failed or retried, not {outcome!r}")
    if stage_of_actor(actor) not in STAGES:
        return
    _count(pipe, namespace, now_s, ["", "", f"{actor}:{outcome}"])


def _count(pipe: Client, namespace: str, now_s: float | None, args: list[str]) -> None:
    """Queue stage_stats.lua with ``args`` (sum field, seconds, fields to count) on ``pipe`` (a status writer's)."""
    _STATS_SCRIPT([total_key(namespace), _this_minute(namespace, now_s)], [MINUTE_TTL_S, *args], client=pipe)


def _this_minute(namespace: str, now_s: float | None) -> str:
    return minute_key(namespace, int((time.time() if now_s is None else now_s) // 60))


@dataclass(frozen=True)
class StageHistogram:
    """One actor's counts since Redis last lost its data: a Prometheus histogram plus outcomes."""

    stage: str
    #: The actor and queue (``image`` or ``image_batch``).
    queue: str
    #: (upper bound in seconds, runs at or under it), cumulative, ending with ``inf``.
    buckets: tuple[tuple[float, int], ...]
    sum_s: float
    succeeded: int
    failed: int
    retried: int

    @property
    def count(self) -> int:
        return self.buckets[-1][1]

    def quantile_s(self, q: float) -> float | None:
        """The ``q`` quantile of the run time, interpolated within its bucket; None without runs."""
        return estimate_quantile(self.buckets, q)


@dataclass(frozen=True)
class StageWindow:
    """One actor over the last hour: outcomes and estimated run-time percentiles (None without runs)."""

    stage: str
    queue: str
    succeeded: int
    failed: int
    retried: int
    p50_s: float | None
    p95_s: float | None


def estimate_quantile(buckets: tuple[tuple[float, int], ...], q: float) -> float | None:
    """The ``q`` quantile from cumulative bucket counts, as Prometheus's ``histogram_quantile`` does.

    The value is interpolated linearly inside the bucket it falls in (the first bucket starts at 0);
    one past the last finite bound is reported as that bound.
    """
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in buckets:
        if count >= rank and count > lower_count:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def cumulative(client: redis.Redis, namespace: str) -> list[StageHistogram]:
    """Every actor's all-time histogram and outcomes, sorted by queue name."""
    actors = _by_actor([client.hgetall(total_key(namespace))])
    return [_histogram(queue, fields) for queue, fields in sorted(actors.items())]


def last_hour(client: redis.Redis, namespace: str, *, now_s: float | None = None) -> list[StageWindow]:
    """Every actor that ran in the last ``WINDOW_MINUTES`` (this minute included), sorted by queue name."""
    this_minute = int((time.time() if now_s is None else now_s) // 60)
    pipe = client.pipeline(transaction=False)
    for minute in range(this_minute - WINDOW_MINUTES + 1, this_minute + 1):
        pipe.hgetall(minute_key(namespace, minute))
    windows = []
    for queue, fields in sorted(_by_actor(pipe.execute()).items()):
        histogram = _histogram(queue, fields)
        windows.append(StageWindow(histogram.stage, queue, histogram.succeeded, histogram.failed, histogram.retried,
                                   histogram.quantile_s(0.5), histogram.quantile_s(0.95)))
    return windows


def _by_actor(hashes: Iterable[dict[bytes | str, bytes | str]]) -> dict[str, dict[str, float]]:
    """Sum hashes of ``{actor}:{field}`` counts into one ``field -> value`` dict per actor."""
    actors: dict[str, dict[str, float]] = {}
    for fields in hashes:
        for raw_field, raw_value in fields.items():
            name = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
            actor, _, field = name.partition(":")
            counts = actors.setdefault(actor, {})
            counts[field] = counts.get(field, 0.0) + float(raw_value)
    return actors


def _histogram(queue: str, fields: dict[str, float]) -> StageHistogram:
    running, buckets = 0, []
    for bound in (*BUCKET_BOUNDS_S, float("inf")):
        running += int(fields.get(f"le:{bucket_label(bound)}", 0))
        buckets.append((bound, running))
    return StageHistogram(
        stage_of_actor(queue), queue, tuple(buckets), fields.get("sum", 0.0),
        *(int(fields.get(outcome, 0)) for outcome in OUTCOMES),
    )
