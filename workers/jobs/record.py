"""Job records and events in Redis.

A job's record is one hash, ``{namespace}:job:{id}``, readable by any Redis
client: scalar fields (``state``, ``stage``, ``error``...) plus one field per
stage timing (``timing.{stage}``, seconds), attempt count (``attempts.{stage}``)
and artifact (``artifact.{name}``, JSON). Every state change is also appended
to the ``{namespace}:events`` stream. A job blocked by a safety check (its record names
``blocked_check`` and ``blocked_category``) is counted in ``{namespace}:safety:blocks``
(``check:category`` fields) and listed in ``{namespace}:safety:blocked`` by the same script
that blocks it, so each block counts once, however it was recorded.

Terminal states are final: once a job has succeeded, failed, been blocked or
cancelled, a late duplicate message cannot move it again. A finished job's
record expires ``retention_s`` later (in the same script that finishes it), so
Redis holds the jobs of the last retention period, not every job ever run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from queue_config.jobs import JobSpec
from queue_config.settings import Settings
from queue_config.tenants import OPERATOR_TENANT
from workers.consumer import wake_key
from workers.embedded_redis import resolve_redis_url
from workers.jobs.outcome import StageOutcome
from workers.jobs.usage import usage_in_record, usage_total
from workers.redis_connection import redis_client

TERMINAL_STATES = ("succeeded", "failed", "blocked", "cancelled")
#: Events kept in the stream (approximately; older ones are trimmed).
EVENTS_MAXLEN = 100_000
#: How long a finished job's record is kept (the ``retention_s`` setting's default: 7 days).
RETENTION_S = 7 * 24 * 3600.0
_FINISH_COUNTS_LUA = (Path(__file__).parent / "finish_counts.lua").read_text()
_TRANSITION_LUA = _FINISH_COUNTS_LUA + (Path(__file__).parent / "transition.lua").read_text()
_ACCEPT_LUA = _FINISH_COUNTS_LUA + (Path(__file__).parent / "accept.lua").read_text()
_EMIT_LUA = (Path(__file__).parent / "emit.lua").read_text()

Client = redis.Redis | redis.client.Pipeline


@dataclass(frozen=True)
class QueuedMessage:
    """A stage message as it is stored on a dramatiq Redis queue: its queue, broker-side id and body."""

    queue_name: str
    redis_id: str
    body: bytes


@dataclass
class JobRecord:
    """A job's status as read back from Redis."""

    id: str
    state: str
    kind: str
    stage: str
    stages: list[str]
    created_at: float
    updated_at: float
    #: The tenant that submitted it (``operator`` for the operator's jobs, and jobs from before tenants).
    tenant: str = OPERATOR_TENANT
    timings_s: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    result_url: str = ""
    result_key: str = ""
    manifest_key: str = ""
    #: The highest safety score of any check that ran (``safety_score.{check}`` fields).
    safety_score: float | None = None
    #: Each check's score: ``image``, ``frames``.
    safety_scores: dict[str, float] = field(default_factory=dict)
    #: Findings that only flagged the job: ``check:category:score`` items, comma-separated.
    safety_flags: str = ""
    #: What blocked the job, when a safety check did: the check, the category and its score.
    blocked_check: str = ""
    blocked_category: str = ""
    blocked_score: float | None = None
    wait_reason: str = ""
    webhook_error: str = ""
    #: Steps done of the stages that report them, as "done/total" by stage (workers/jobs/progress.py).
    progress: dict[str, str] = field(default_factory=dict)
    #: Stages served from the cache, each with the job whose run it reused (``cached.{stage}``; stage_cache.py).
    cached: dict[str, str] = field(default_factory=dict)
    #: The catalog model that served each model stage, with its revision (``model@revision``; ``model.{stage}``).
    models: dict[str, str] = field(default_factory=dict)
    #: What each stage used, over all its runs: ``wall_s``, ``device_s``, ``calls``, ``cost`` (workers/jobs/usage.py).
    usage: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The job's usage, every stage's summed.
    usage_total: dict[str, float] = field(default_factory=dict)
    #: A queued job's place: messages ahead of it on its queue (filled in by the API's job read).
    queue_position: int | None = None
    #: Where a stage that was running when the job was cancelled stopped ("image: step 3 of 50").
    stopped_at: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    #: A failed job's last traceback, secrets scrubbed (see workers/jobs/scrub.py).
    traceback: str = ""
    #: Where a failed job's message lies dead: ``"{queue}\t{broker message id}"``.
    dead_letter: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class JobStatusStore:
    """Reads and writes job records. ``client`` must decode responses to str.

    Parameters:
        client: The Redis the records live in.
        namespace: Prefix of every key.
        retention_s: How long a finished job's record is kept before it expires.
    """

    def __init__(self, client: redis.Redis, namespace: str = "framequeue", *, retention_s: float = RETENTION_S) -> None:
        self.client = client
        self.namespace = namespace
        self.retention_s = retention_s
        self.events_key = f"{namespace}:events"
        self.dead_letters_key = f"{namespace}:dead_letters"
        #: Every job id, scored by its creation time (for listing, newest first).
        self.index_key = f"{namespace}:jobs"
        #: The tenants whose jobs have an index of their own (``tenant_index_key``; not the operator).
        self.tenants_key = f"{namespace}:jobs:tenants"
        #: What a tenant's own index is named after: the tenant follows it.
        self.tenant_index_prefix = f"{namespace}:jobs:tenant:"
        #: Cancelled job ids, scored by when: workers skip their messages.
        self.cancelled_key = f"{namespace}:cancelled"
        #: Unfinished job ids, scored by when the reconciler should next look at them.
        self.active_key = f"{namespace}:active"
        #: Job id -> "queue\tredis message id" of the job's newest message (see FramequeueBroker).
        self.inflight_key = f"{namespace}:inflight"
        #: ``check:category`` -> how many jobs a safety check blocked (all time).
        self.safety_blocks_key = f"{namespace}:safety:blocks"
        #: The newest blocked job ids that name their check, scored by when they were blocked.
        self.safety_blocked_key = f"{namespace}:safety:blocked"
        self._transition = client.register_script(_TRANSITION_LUA)
        self._accept = client.register_script(_ACCEPT_LUA)
        self._emit = client.register_script(_EMIT_LUA)

    def tenant_index_key(self, tenant: str | None) -> str:
        """An index, scored by creation time, that lists every job of ``tenant``: the tenant's own, or for
        the operator (whose jobs are all of a deployment without tenants, and who may read everyone's)
        the job index, so that no job is indexed twice over; the job index too when no tenant is named."""
        return self.index_key if tenant in (None, "", OPERATOR_TENANT) else self.tenant_index_prefix + tenant

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStatusStore:
        """The store on the configured Redis (the embedded one when ``REDIS_URL`` is unset)."""
        client = redis_client(resolve_redis_url(settings), decode_responses=True)
        return cls(client, settings.namespace, retention_s=settings.retention_s)

    @property
    def retention_ms(self) -> int:
        """How long a finished job's keys live, in ms."""
        return self._retention_ms

    @property
    def _retention_ms(self) -> int:
        return max(1, round(self.retention_s * 1000))

    def job_key(self, job_id: str) -> str:
        return f"{self.namespace}:job:{job_id}"

    def batch_key(self, batch_id: str) -> str:
        return f"{self.namespace}:batch:{batch_id}"

    def create(
        self, spec: JobSpec, stages: tuple[str, ...], state: str = "queued", error: str = "", **fields: str
    ) -> bool:
        """Record a new job that has no message (e.g. one blocked at submission). False if its id exists.

        ``fields`` are extra record fields, such as a safety block's ``blocked_category``.
        """
        return self.accept_many([spec], lambda _: stages, lambda _: None, state=state, error=error, fields=fields)[0]

    def accept_many(
        self,
        specs: list[JobSpec],
        stages_of: Callable[[JobSpec], tuple[str, ...]],
        first_message_of: Callable[[JobSpec], QueuedMessage | None],
        *,
        state: str = "queued",
        error: str = "",
        emit: bool = True,
        fields: dict[str, str] | None = None,
        fields_of: Callable[[JobSpec], dict[str, str]] | None = None,
    ) -> list[bool]:
        """Record new jobs and enqueue their first messages in one pipelined round trip.

        Each job is one script run: its record and its message are written together or not at
        all, so an accepted job always has a message. For each job, whether it was new (a job
        whose id exists is left as it is, and nothing is enqueued for it). A job of a batch also
        names the batch's counters, which its final state increments (at once, if it is accepted
        finished). ``fields``, and ``fields_of(spec)`` for each job, are extra record fields.
        """
        if not specs:
            return []
        now = f"{time.time():.6f}"
        # One job goes as one script call; more as a pipeline, which redis-py precedes with a round trip
        # that asks whether Redis knows the script.
        pipe: Client = self.client.pipeline(transaction=False) if len(specs) > 1 else self.client
        for spec in specs:
            record: dict[str, Any] = {
                "id": spec.id, "state": state, "kind": spec.kind.value, "stage": "",
                "stages": ",".join(stages_of(spec)), "created_at": now, "updated_at": now, "error": error,
                "spec": spec.model_dump_json(exclude_defaults=True), "tenant": spec.tenant or OPERATOR_TENANT,
                **(fields or {}),
                **(fields_of(spec) if fields_of else {}),
            }
            if spec.batch_id:
                record["batch_key"] = self.batch_key(spec.batch_id)
            message = first_message_of(spec)
            queue = f"{self.namespace}:{message.queue_name}" if message else ""
            keys = [self.job_key(spec.id), self.index_key, self.active_key, self.events_key, self.inflight_key,
                    queue, f"{queue}.msgs" if message else "", self.safety_blocks_key, self.safety_blocked_key,
                    wake_key(self.namespace, message.queue_name) if message else "",
                    self.tenant_index_key(record["tenant"]), self.tenants_key]
            args = [EVENTS_MAXLEN, now, spec.id, "1" if emit else "",
                    *((message.redis_id, message.body, message.queue_name) if message else ("", "", "")),
                    self._retention_ms, *(item for pair in record.items() for item in pair)]
            accepted = self._accept(keys=keys, args=args, client=pipe)
        return [bool(new) for new in (pipe.execute() if isinstance(pipe, redis.client.Pipeline) else [accepted])]

    def transition(self, job_id: str, state: str, stage: str = "", error: str = "", **fields: str) -> bool:
        """Move a job to ``state`` (with extra fields) unless it has finished. True if it moved."""
        return self._call_transition(self.client, job_id, state, stage, error, fields) == 1

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished; its queued messages are then skipped. True if it was."""
        if not self.transition(job_id, "cancelled", error="cancelled on request"):
            return False
        self.client.zadd(self.cancelled_key, {job_id: time.time()})
        return True

    def list_jobs(self, *, state: str | None = None, kind: str | None = None, limit: int = 50,
                  tenant: str | None = None) -> list[JobRecord]:
        """The newest jobs first, optionally only those in ``state``, of ``kind`` or of ``tenant`` (read from
        the tenant's index: a tenant's listing looks at no other tenant's job)."""
        found: list[JobRecord] = []
        start, page = 0, max(limit, 100)
        index = self.tenant_index_key(tenant)
        while len(found) < limit:
            ids = cast("list[str]", self.client.zrevrange(index, start, start + page - 1))
            if not ids:
                break
            for record in filter(None, (self.get(job_id) for job_id in ids)):
                if ((state is None or record.state == state) and (kind is None or record.kind == kind)
                        and (tenant is None or record.tenant == tenant)):
                    found.append(record)
            start += page
        return found[:limit]

    def cancelled_since(self, since: float) -> tuple[list[str], float]:
        """Job ids cancelled after ``since`` (epoch s), and the time to ask from next."""
        entries = cast("list[tuple[str, float]]", self.client.zrangebyscore(
            self.cancelled_key, f"({since}", "+inf", withscores=True))
        return [job_id for job_id, _ in entries], max([since, *(score for _, score in entries)])

    def stage_started(self, job_id: str, stage: str, stage_index: int, client: Client | None = None) -> Any:
        """Mark ``stage`` (the ``stage_index``-th of the job's plan) running and count the attempt.

        Returns 1 if the job moved, 0 if it had finished or moved past this stage, -1 if there is
        no record of it; with a pipeline as ``client``, the command is only queued on it.
        """
        return self._call_transition(
            client or self.client, job_id, "running", stage, "", {}, f"attempts.{stage}", stage_index
        )

    def stage_finished(
        self, job_id: str, stage: str, duration_s: float, outcome: StageOutcome | None, client: Client | None = None
    ) -> None:
        """Record a stage's timing and what it returned (artifacts, fields, final state), in one round trip.

        With a pipeline as ``client``, the commands are only queued on it.
        """
        outcome = outcome or StageOutcome()
        fields: dict[Any, Any] = {f"timing.{stage}": f"{duration_s:.4f}"}
        for name, stored in outcome.artifacts.items():
            fields[f"artifact.{name}"] = json.dumps(stored.as_dict(), sort_keys=True)
        record: dict[Any, Any] = dict(outcome.record)

        def queue_on(pipe: Client) -> None:
            if outcome.final_state:
                pipe.hset(self.job_key(job_id), mapping=fields)
                error = record.pop("error", "")
                self._call_transition(pipe, job_id, outcome.final_state, stage, error, record)
            else:
                pipe.hset(self.job_key(job_id), mapping={**fields, **record})

        self._in_one_round_trip(queue_on, client)

    def stage_failed(
        self, job_id: str, stage: str, error: str, message_id: str, client: Client | None = None, **fields: str
    ) -> None:
        """Fail the job and say why its message was dead-lettered, in one round trip.

        ``fields`` are recorded with the failure (its ``traceback``, its ``dead_letter``). With a
        pipeline as ``client``, the commands are only queued on it.
        """

        def queue_on(pipe: Client) -> None:
            self._dead_letter(pipe, message_id, stage, error, job_id)
            if job_id:
                self._call_transition(pipe, job_id, "failed", stage, error, fields)

        self._in_one_round_trip(queue_on, client)

    def stage_waiting(self, job_id: str, stage: str, reason: str, client: Client | None = None) -> None:
        """Say that ``stage`` was put back to wait (for quota, a key, a slot), and why."""
        self._in_one_round_trip(
            lambda pipe: self._call_transition(pipe, job_id, "waiting", stage, "", {"wait_reason": reason}), client
        )

    def _in_one_round_trip(self, queue_on: Callable[[Client], object], client: Client | None) -> None:
        """Queue commands on the caller's pipeline, or on one of our own that is sent at once."""
        if client is not None:
            queue_on(client)
            return
        pipe = self.client.pipeline(transaction=False)
        queue_on(pipe)
        pipe.execute()

    def _call_transition(
        self, client: Client, job_id: str, state: str, stage: str, error: str, fields: dict[str, str],
        attempt_field: str = "", stage_index: int | None = None,
    ) -> Any:
        flat = [item for pair in fields.items() for item in pair]
        index = "" if stage_index is None else stage_index
        args = [EVENTS_MAXLEN, f"{time.time():.3f}", job_id, state, stage, error, attempt_field, index,
                self._retention_ms, *flat]
        keys = [self.job_key(job_id), self.events_key, self.active_key, self.inflight_key,
                self.safety_blocks_key, self.safety_blocked_key]
        return self._transition(keys=keys, args=args, client=client)

    def state_of(self, job_id: str) -> str | None:
        return cast("str | None", self.client.hget(self.job_key(job_id), "state"))

    def tenant_of(self, job_id: str) -> str | None:
        """The tenant that submitted the job (``operator`` when it names none); None when there is no such job."""
        state, tenant = cast("list[str | None]", self.client.hmget(self.job_key(job_id), "state", "tenant"))
        return (tenant or OPERATOR_TENANT) if state else None

    def get(self, job_id: str) -> JobRecord | None:
        raw = cast("dict[str, str]", self.client.hgetall(self.job_key(job_id)))
        if "state" not in raw:
            return None
        usage = usage_in_record(raw)
        return JobRecord(
            id=raw["id"], state=raw["state"], kind=raw.get("kind", ""), stage=raw.get("stage", ""),
            stages=[s for s in raw.get("stages", "").split(",") if s],
            created_at=float(raw.get("created_at", 0)), updated_at=float(raw.get("updated_at", 0)),
            tenant=raw.get("tenant") or OPERATOR_TENANT,
            timings_s={k[7:]: float(v) for k, v in raw.items() if k.startswith("timing.")},
            attempts={k[9:]: int(v) for k, v in raw.items() if k.startswith("attempts.")},
            artifacts={k[9:]: json.loads(v) for k, v in raw.items() if k.startswith("artifact.")},
            error=raw.get("error", ""), result_url=raw.get("result_url", ""),
            result_key=raw.get("result_key", ""), manifest_key=raw.get("manifest_key", ""),
            safety_score=max(scores.values()) if (scores := safety_scores_of(raw)) else None,
            safety_scores={k[13:]: float(v) for k, v in raw.items() if k.startswith("safety_score.")},
            safety_flags=raw.get("safety_flags", ""), blocked_check=raw.get("blocked_check", ""),
            blocked_category=raw.get("blocked_category", ""),
            blocked_score=float(raw["blocked_score"]) if raw.get("blocked_score") else None,
            wait_reason=raw.get("wait_reason", ""), webhook_error=raw.get("webhook_error", ""),
            stopped_at=raw.get("stopped_at", ""),
            progress={k[9:]: v for k, v in raw.items() if k.startswith("progress.")},
            cached={k[7:]: v for k, v in raw.items() if k.startswith("cached.")},
            models={k[6:]: v for k, v in raw.items() if k.startswith("model.")},
            usage=usage, usage_total=usage_total(usage),
            spec=JobSpec.model_validate_json(raw["spec"]).model_dump(mode="json") if raw.get("spec") else {},
            traceback=raw.get("traceback", ""), dead_letter=raw.get("dead_letter", ""),
        )

    def emit(self, job_id: str, event: str, client: Client | None = None, **data: str) -> None:
        """Append an event that is not a state change (e.g. ``retrying``) to the stream, with the job's tenant."""
        fields: dict[Any, Any] = {"job_id": job_id, "event": event, "at": f"{time.time():.3f}"}
        fields.update((name, value) for name, value in data.items() if value)
        flat = [item for pair in fields.items() for item in pair]
        self._emit(keys=[self.events_key, self.job_key(job_id)], args=[EVENTS_MAXLEN, *flat],
                   client=client or self.client)

    def _dead_letter(self, client: Client, message_id: str, actor: str, reason: str,
                     job_id: str) -> None:
        entry = {"actor": actor, "reason": reason, "job_id": job_id, "at": time.time()}
        client.hset(self.dead_letters_key, message_id, json.dumps(entry))

    def dead_letter_reason(self, message_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.dead_letters_key, message_id)
        return json.loads(raw) if raw else None


def safety_scores_of(raw: dict[str, str]) -> dict[str, float]:
    """Every safety score in a raw record: ``safety_score.{check}`` fields, and a plain ``safety_score``."""
    return {k: float(v) for k, v in raw.items() if k == "safety_score" or k.startswith("safety_score.")}
