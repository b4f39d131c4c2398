"""Job records and events in Redis.

A job's record is one hash, ``{namespace}:job:{id}``, readable by any Redis
client: scalar fields (``state``, ``stage``, ``error``...) plus one field per
stage timing (``timing.{stage}``, seconds), attempt count (``attempts.{stage}``)
and artifact (``artifact.{name}``, JSON). Every state change is also appended
to the ``{namespace}:events`` stream.

Terminal states are final: once a job has succeeded, failed, been blocked or
cancelled, a late duplicate message cannot move it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from queue_config.jobs import JobSpec

TERMINAL_STATES = ("succeeded", "failed", "blocked", "cancelled")
#: Events kept in the stream (approximately; older ones are trimmed).
EVENTS_MAXLEN = 100_000

# Sets the given fields unless the job is in a terminal state. Returns 1 if it did.
_SET_UNLESS_TERMINAL = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == false then return -1 end
for _, terminal in ipairs({'succeeded', 'failed', 'blocked', 'cancelled'}) do
  if state == terminal then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


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
    timings_s: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    result_url: str = ""
    result_key: str = ""
    manifest_key: str = ""
    safety_score: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class JobStatusStore:
    """Reads and writes job records. ``client`` must decode responses to str."""

    def __init__(self, client: redis.Redis, namespace: str = "framequeue") -> None:
        self.client = client
        self.namespace = namespace
        self.events_key = f"{namespace}:events"
        self.dead_letters_key = f"{namespace}:dead_letters"
        self._set_unless_terminal = client.register_script(_SET_UNLESS_TERMINAL)

    def job_key(self, job_id: str) -> str:
        return f"{self.namespace}:job:{job_id}"

    def create(self, spec: JobSpec, stages: tuple[str, ...], state: str = "queued", error: str = "") -> bool:
        """Record a new job. False (and nothing changes) if a job with this id exists."""
        now = time.time()
        record = {
            "id": spec.id, "state": state, "kind": spec.kind.value, "stage": "", "stages": ",".join(stages),
            "created_at": now, "updated_at": now, "error": error, "spec": spec.model_dump_json(),
        }
        if not self.client.hsetnx(self.job_key(spec.id), "id", spec.id):
            return False
        self.client.hset(self.job_key(spec.id), mapping=record)
        self.emit(spec.id, state, error=error)
        return True

    def transition(self, job_id: str, state: str, **fields: Any) -> bool:
        """Move a job to ``state`` (with extra fields) unless it has finished. True if it moved."""
        values = {"state": state, "updated_at": time.time(), **fields}
        flat = [item for pair in values.items() for item in (pair[0], str(pair[1]))]
        moved = self._set_unless_terminal(keys=[self.job_key(job_id)], args=flat) == 1
        if moved:
            self.emit(job_id, state, stage=str(fields.get("stage", "")), error=str(fields.get("error", "")))
        return moved

    def stage_started(self, job_id: str, stage: str) -> int:
        """Mark ``stage`` running; returns which attempt at this stage this is."""
        attempt = int(self.client.hincrby(self.job_key(job_id), f"attempts.{stage}", 1))
        self.transition(job_id, "running", stage=stage)
        return attempt

    def stage_finished(self, job_id: str, stage: str, duration_s: float) -> None:
        self.client.hset(self.job_key(job_id), f"timing.{stage}", f"{duration_s:.4f}")

    def annotate(self, job_id: str, **fields: str) -> None:
        """Set informational fields that do not change the job's state."""
        if fields:
            self.client.hset(self.job_key(job_id), mapping=fields)

    def add_artifact(self, job_id: str, name: str, artifact: dict[str, Any]) -> None:
        self.client.hset(self.job_key(job_id), f"artifact.{name}", json.dumps(artifact, sort_keys=True))

    def state_of(self, job_id: str) -> str | None:
        return self.client.hget(self.job_key(job_id), "state")

    def get(self, job_id: str) -> JobRecord | None:
        raw: dict[str, str] = self.client.hgetall(self.job_key(job_id))
        if "state" not in raw:
            return None
        return JobRecord(
            id=raw["id"], state=raw["state"], kind=raw.get("kind", ""), stage=raw.get("stage", ""),
            stages=[s for s in raw.get("stages", "").split(",") if s],
            created_at=float(raw.get("created_at", 0)), updated_at=float(raw.get("updated_at", 0)),
            timings_s={k[7:]: float(v) for k, v in raw.items() if k.startswith("timing.")},
            attempts={k[9:]: int(v) for k, v in raw.items() if k.startswith("attempts.")},
            artifacts={k[9:]: json.loads(v) for k, v in raw.items() if k.startswith("artifact.")},
            error=raw.get("error", ""), result_url=raw.get("result_url", ""),
            result_key=raw.get("result_key", ""), manifest_key=raw.get("manifest_key", ""),
            safety_score=float(raw["safety_score"]) if "safety_score" in raw else None,
            spec=json.loads(raw.get("spec") or "{}"),
        )

    def emit(self, job_id: str, event: str, **data: str) -> None:
        fields = {"job_id": job_id, "event": event, "at": f"{time.time():.3f}", **{k: v for k, v in data.items() if v}}
        self.client.xadd(self.events_key, fields, maxlen=EVENTS_MAXLEN, approximate=True)

    def record_dead_letter(self, message_id: str, actor: str, reason: str, job_id: str = "") -> None:
        """Say why a message was dead-lettered (dramatiq keeps the message itself)."""
        entry = {"actor": actor, "reason": reason, "job_id": job_id, "at": time.time()}
        self.client.hset(self.dead_letters_key, message_id, json.dumps(entry))

    def dead_letter_reason(self, message_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.dead_letters_key, message_id)
        return json.loads(raw) if raw else None
