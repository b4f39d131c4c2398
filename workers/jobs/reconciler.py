"""The reconciler: sends on again the accepted jobs whose message was lost.

dramatiq acknowledges a message after its after-hooks have run and swallows their errors, so a
Redis blip at the wrong moment can drop a retry or a final state while the message is acked.
Every enqueue of a stage message records where the job's newest message lies (its in-flight
pointer, see ``FramequeueBroker``); a job that is unfinished, has not moved for
``stale_after_s`` and whose newest message is on no queue, in no delay set and held by no
worker has lost it. The reconciler enqueues the job's current stage again (stages are
idempotent), or fails the job with the reason after ``max_repairs`` repairs.

Each pass also trims what finished jobs left once the retention has passed (index entries,
events, cancellations, dead-letter reasons, completed batches; see ``RetentionTrimmer``).

One reconciler acts at a time: each holds a lease in Redis (``run_forever``) and only the
holder runs passes, so it may run in several processes for availability.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from dramatiq.logging import get_logger

from queue_config.catalog import Catalog, catalog_of
from queue_config.jobs import JobSpec
from queue_config.settings import get_settings
from workers.broker import FramequeueBroker
from workers.jobs.legacy_queues import move_legacy_messages
from workers.jobs.messages import StageMessage, enqueue_stage
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.retention import RetentionTrimmer, Trimmed
from workers.jobs.tenant_index import backfill_tenant_indexes
from workers.outages import serve_through_outages

#: A job is looked at once it has not moved (nor been looked at) for this long.
STALE_AFTER_S = 60.0
#: Repairs of one job before it fails with the reason.
MAX_REPAIRS = 3
#: Seconds between passes.
INTERVAL_S = 10.0
#: Jobs looked at per script run.
CHUNK = 500
#: The reference each stage leaves for the next: a repair starts at the first stage whose output is gone.
STAGE_OUTPUTS = {"prompt_enhance": "prompt", "image": "image", "frames": "frames", "video": "video"}

_FIND_LOST_LUA = (Path(__file__).parent / "find_lost.lua").read_text()


@dataclass(frozen=True)
class Pass:
    """What one pass did."""

    looked_at: int
    repaired: list[str]
    failed: list[str]
    trimmed: Trimmed = field(default_factory=Trimmed)


class Reconciler:
    """Finds jobs that lost their message and repairs them.

    Parameters:
        status: The job records.
        broker: Where repaired jobs are enqueued.
        stale_after_s: How long a job must have been still before it is looked at.
        max_repairs: Repairs of one job before it fails instead.
        retention_s: How long finished jobs' traces are kept; the store's ``retention_s`` by default.
        catalog: Routes repaired and moved messages to their models' queues; the process settings' by default.
    """

    def __init__(
        self,
        status: JobStatusStore,
        broker: FramequeueBroker,
        *,
        stale_after_s: float = STALE_AFTER_S,
        max_repairs: int = MAX_REPAIRS,
        retention_s: float | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.status = status
        self.broker = broker
        self.catalog = catalog or catalog_of(get_settings())
        self.stale_after_s = stale_after_s
        self.max_repairs = max_repairs
        self.stats_key = stats_key(status)
        self.lease_key = f"{status.namespace}:reconciler:lease"
        self.logger = get_logger(__name__, type(self))
        self._find_lost = status.client.register_script(_FIND_LOST_LUA)
        self.trimmer = RetentionTrimmer(status, retention_s=retention_s)

    def run_once(self) -> Pass:
        """Look at every job that has been still for ``stale_after_s``; repair the lost ones; trim the old."""
        client, now = self.status.client, time.time()
        if moved := move_legacy_messages(self.broker, self.catalog):
            self.logger.warning("Moved %d messages from the queues of before the model catalog to their models' "
                                "queues.", moved)
        if looked_at := backfill_tenant_indexes(self.status):
            self.logger.info("Listed the jobs of %d job index entries in their tenants' own indexes.", looked_at)
        stale = cast("list[str]", client.zrangebyscore(self.status.active_key, "-inf", now - self.stale_after_s))
        repaired: list[str] = []
        failed: list[str] = []
        for start in range(0, len(stale), CHUNK):
            for job_id in self.lost(stale[start : start + CHUNK]):
                (repaired if self.repair(job_id) else failed).append(job_id)
        trimmed = self.trimmer.trim(now)
        if trimmed.total:
            self.logger.info("Trimmed what jobs finished over %g s ago left: %s.", self.trimmer.retention_s, trimmed)
        client.hset(self.stats_key, "last_pass_at", f"{now:.3f}")
        return Pass(len(stale), repaired, failed, trimmed)

    def lost(self, job_ids: list[str]) -> list[str]:
        """Those of ``job_ids`` that are unfinished and have no message anywhere (however recently they moved)."""
        if not job_ids:
            return []
        keys = [self.status.active_key, self.status.inflight_key]
        args = [self.status.namespace, f"{time.time():.3f}", *job_ids]
        return cast("list[str]", self._find_lost(keys=keys, args=args))

    def repair(self, job_id: str) -> bool:
        """Enqueue the job's stage again; after ``max_repairs``, fail it with the reason. True if it was re-enqueued."""
        record = self.status.get(job_id)
        if record is None or record.finished:
            return False
        repairs = int(self.status.client.hincrby(self.status.job_key(job_id), "repairs", 1))
        stage = repair_stage(record)
        if repairs > self.max_repairs:
            reason = f"LostMessage: the job's message was lost {repairs} times (last at stage {stage}); gave up"
            self.status.transition(job_id, "failed", stage=stage, error=reason)
            self.status.client.hincrby(self.stats_key, "failed", 1)
            self.logger.warning("Job %s failed: %s.", job_id, reason)
            return False
        refs = {name: str(artifact["key"]) for name, artifact in record.artifacts.items() if "key" in artifact}
        message = StageMessage(job=JobSpec.model_validate(record.spec), refs=refs)
        enqueue_stage(self.broker, stage, message, self.catalog)
        self.status.emit(job_id, "repaired", stage=stage, repairs=str(repairs))
        self.status.client.hincrby(self.stats_key, "repaired", 1)
        self.logger.warning("Job %s had lost its message; stage %s enqueued again (repair %d).", job_id, stage, repairs)
        return True

    def run_forever(self, stop: threading.Event, interval_s: float = INTERVAL_S) -> None:
        """Run a pass every ``interval_s`` while this process holds the lease; ride out Redis outages."""
        token = uuid.uuid4().hex

        def serve_once() -> None:
            if self._hold_lease(token, lease_ms=int(interval_s * 3000)):
                self.run_once()
            stop.wait(interval_s)

        serve_through_outages(serve_once, should_stop=stop.is_set, logger=self.logger, wait=stop.wait)

    def _hold_lease(self, token: str, lease_ms: int) -> bool:
        client = self.status.client
        if client.set(self.lease_key, token, nx=True, px=lease_ms):
            return True
        if client.get(self.lease_key) == token:
            client.pexpire(self.lease_key, lease_ms)
            return True
        return False


@dataclass(frozen=True)
class RepairStats:
    """What the reconciler has done, as operators see it (dashboard, ``/metrics``)."""

    repaired: int
    gave_up: int
    #: When its last pass ran (epoch s), or None if it never has.
    last_pass_at: float | None


def stats_key(status: JobStatusStore) -> str:
    return f"{status.namespace}:reconciler"


def repair_stats(status: JobStatusStore) -> RepairStats:
    raw = cast("dict[str, str]", status.client.hgetall(stats_key(status)))
    last = raw.get("last_pass_at")
    return RepairStats(int(raw.get("repaired", 0)), int(raw.get("failed", 0)), float(last) if last else None)


def repair_stage(record: JobRecord) -> str:
    """The stage to run again: the job's current one, or an earlier one whose output was never recorded."""
    plan = record.stages
    current = record.stage if record.stage in plan else plan[0]
    for stage in plan[: plan.index(current)]:
        output = STAGE_OUTPUTS.get(stage)
        if output and output not in record.artifacts:
            return stage
    return current
