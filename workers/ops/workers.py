"""The worker registry as an operator reads it: one entry per worker process, stale ones marked.

Each worker process keeps its own entry (``workers.middleware.registry.WorkerRegistry``): a hash
``{namespace}:worker:{id}`` with what it serves and the jobs it is running (one ``job:{message id}``
field each), and its id in the sorted set ``{namespace}:workers`` scored by its last heartbeat (ms,
Redis's clock). A process that stops cleanly removes its entry; one that dies stops beating, is
listed as stale once its heartbeat is older than the ``stale_after_ms`` it wrote itself (the
broker's heartbeat timeout), and is gone once its hash expires.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from queue_config.stages import STAGES
from workers.keys.pool import redis_now_ms

#: Prefix of a current job's field in a worker's hash; the rest is the message id.
JOB_FIELD_PREFIX = "job:"


def index_key(namespace: str) -> str:
    """The sorted set of worker ids, scored by last heartbeat (ms)."""
    return f"{namespace}:workers"


def entry_key(namespace: str, worker_id: str) -> str:
    """The hash describing one worker process."""
    return f"{namespace}:worker:{worker_id}"


@dataclass(frozen=True)
class CurrentJob:
    """A message a worker thread is running now."""

    job_id: str
    stage: str
    message_id: str
    #: When the thread started it (s since the epoch).
    since: float


@dataclass(frozen=True)
class WorkerEntry:
    """One worker process as it last described itself."""

    id: str
    host: str
    pid: int
    stages: tuple[str, ...]
    queues: tuple[str, ...]
    #: What the process runs its stages with: ``profile``, ``device``, ``frames_backend`` and,
    #: for a stage routed to a provider, ``<stage>`` -> ``<provider>:<model>``.
    models: dict[str, str]
    threads: int
    current_jobs: tuple[CurrentJob, ...]
    #: When the process booted and when it last beat (s since the epoch; the beat by Redis's clock).
    started_at: float
    last_seen: float
    version: str
    #: No heartbeat for longer than the broker's heartbeat timeout: presumed dead.
    stale: bool
    #: Seconds since the last heartbeat.
    age_s: float

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-ready values."""
        return asdict(self)


def list_workers(client: redis.Redis, namespace: str, now_ms: float | None = None) -> list[WorkerEntry]:
    """Every registered worker process, freshest first, stale ones included until their entry expires.

    ``now_ms`` is Redis's time by default (heartbeats are stamped with it, so hosts' clocks need not
    agree). Ids whose hash has already expired are dropped from the index.
    """
    beats = cast("list[tuple[Any, float]]", client.zrevrange(index_key(namespace), 0, -1, withscores=True))
    pipe = client.pipeline(transaction=False)
    for worker_id, _ in beats:
        pipe.hgetall(entry_key(namespace, _text(worker_id)))
    hashes = pipe.execute()
    now = redis_now_ms(client) if now_ms is None else now_ms
    found, gone = [], []
    for (worker_id, beat_ms), fields in zip(beats, hashes, strict=True):
        if fields:
            found.append(_entry(_text(worker_id), {_text(k): _text(v) for k, v in fields.items()}, beat_ms, now))
        else:
            gone.append(worker_id)
    if gone:
        client.zrem(index_key(namespace), *gone)
    return found


def live_workers_by_stage(client: redis.Redis, namespace: str, now_ms: float | None = None) -> dict[str, int]:
    """How many live (not stale) worker processes serve each stage; every stage is named, 0 included."""
    counts = dict.fromkeys(STAGES, 0)
    for entry in list_workers(client, namespace, now_ms):
        if not entry.stale:
            for stage in entry.stages:
                counts[stage] = counts.get(stage, 0) + 1
    return counts


def _entry(worker_id: str, fields: dict[str, str], beat_ms: float, now_ms: float) -> WorkerEntry:
    age_ms = max(0.0, now_ms - beat_ms)
    jobs = [
        CurrentJob(job["job_id"], job["stage"], name.removeprefix(JOB_FIELD_PREFIX), job["since"])
        for name, value in fields.items()
        if name.startswith(JOB_FIELD_PREFIX) and (job := json.loads(value))
    ]
    return WorkerEntry(
        id=worker_id,
        host=fields.get("host", ""),
        pid=int(fields.get("pid", 0)),
        stages=tuple(json.loads(fields.get("stages", "[]"))),
        queues=tuple(json.loads(fields.get("queues", "[]"))),
        models=json.loads(fields.get("models", "{}")),
        threads=int(fields.get("threads", 0)),
        current_jobs=tuple(sorted(jobs, key=lambda job: job.since)),
        started_at=float(fields.get("started_at", 0)),
        last_seen=beat_ms / 1000,
        version=fields.get("version", ""),
        stale=age_ms > float(fields.get("stale_after_ms", 0)),
        age_s=age_ms / 1000,
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
