"""Overnight batches in Redis: pipelined submission, progress, completion manifest, retry, cancel.

A batch is a hash, ``{namespace}:batch:{id}`` (name, total, counters of finished jobs by
state, when it was submitted and completed, its manifest's key), and a sorted set of its job
ids by line number. Its jobs are ordinary jobs with ``priority="batch"``: they run on the
stages' batch actors, after interactive work, within the batch window if one is set. Each
job's final state increments the batch's counters (in the same script that records it); the
worker that records the last one writes the manifest and emits ``batch_completed``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

from queue_config.catalog import Catalog, catalog_of
from queue_config.jobs import JobSpec
from queue_config.safety_policy import SafetyPolicy
from queue_config.settings import get_settings
from queue_config.stages import stage_plan
from queue_config.tenants import OPERATOR_TENANT
from storage import ObjectStore
from workers.batches.files import BatchLine
from workers.broker import FramequeueBroker
from workers.jobs.messages import StageMessage
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.jobs.submit import accept_jobs, stage_message

#: Jobs recorded and enqueued per pipeline.
CHUNK = 500


def batches_key(status: JobStatusStore) -> str:
    """Every batch id, scored by when it was first submitted."""
    return f"{status.namespace}:batches"


def items_key(status: JobStatusStore, batch_id: str) -> str:
    return status.batch_key(batch_id) + ":items"


def submit_lines(
    status: JobStatusStore,
    broker: FramequeueBroker,
    batch_id: str,
    name: str,
    lines: list[BatchLine],
    progress: Callable[[int], None] | None = None,
    *,
    webhook_url: str | None = None,
    policy: SafetyPolicy | None = None,
    store: ObjectStore | None = None,
    url_ttl_s: int = 24 * 3600,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Record and enqueue a batch's valid lines; lines already submitted are skipped.

    Idempotent: submitting the same file again, or again after a crash halfway, enqueues no
    job twice (job ids come from the lines), and completes what the first try did not.
    ``webhook_url`` receives the batch's own events (``batch_submitted``, ``batch_completed``).
    Lines are screened as single jobs are (``policy`` defaults to the settings'): a blocked line
    is recorded ``blocked`` and counts as finished in the batch at once. With ``store``, a batch
    that is finished as soon as it is submitted (every line blocked) completes here, manifest and
    all, since no worker will finish a job of it. ``catalog`` (default: the settings') routes each
    job's first stage to its model's queue.
    """
    specs = [(line.line_number, line.spec) for line in lines if line.spec is not None]
    key = status.batch_key(batch_id)
    if status.client.hsetnx(key, "id", batch_id):
        now = time.time()
        status.client.hset(key, mapping={"name": name, "created_at": now})
        status.client.zadd(batches_key(status), {batch_id: now})
    status.client.hset(key, mapping={"total": len(specs), **({"webhook_url": webhook_url} if webhook_url else {})})
    created_count = 0
    for start in range(0, len(specs), CHUNK):
        chunk = specs[start : start + CHUNK]
        status.client.zadd(items_key(status, batch_id), {spec.id: number for number, spec in chunk})
        created_count += sum(accept_jobs(broker, status, [spec for _, spec in chunk], emit=False, policy=policy,
                                         catalog=catalog))
        if progress:
            progress(len(chunk))
    status.emit(f"batch:{batch_id}", "batch_submitted", batch_id=batch_id, total=str(len(specs)),
                tenant=batch_tenant(status, batch_id))
    if store is not None:
        complete_if_done(status, store, batch_id, url_ttl_s)
    return {"total": len(specs), "enqueued": created_count, "already_submitted": len(specs) - created_count}


def batch_tenant(status: JobStatusStore, batch_id: str) -> str:
    """The tenant that submitted the batch (its hash's ``tenant``; the operator's batches name none)."""
    return cast("str | None", status.client.hget(status.batch_key(batch_id), "tenant")) or OPERATOR_TENANT


def batch_progress(status: JobStatusStore, batch_id: str) -> dict[str, Any] | None:
    """Counts by state, throughput and ETA, read from the batch's counters (one round trip)."""
    raw = cast("dict[str, str]", status.client.hgetall(status.batch_key(batch_id)))
    if "id" not in raw:
        return None
    total, finished = int(raw.get("total", 0)), int(raw.get("finished", 0))
    counts = {state: int(raw.get(f"n_{state}", 0)) for state in TERMINAL_STATES}
    elapsed_s = max(time.time() - float(raw.get("created_at", time.time())), 1e-6)
    rate_per_s = finished / elapsed_s
    eta_s = (total - finished) / rate_per_s if rate_per_s and finished < total else None
    return {
        "batch_id": batch_id, "name": raw.get("name", ""), "total": total, "finished": finished,
        "unfinished": total - finished, "counts": counts, "jobs_per_min": round(rate_per_s * 60, 2),
        "eta_s": round(eta_s) if eta_s is not None else None, "completed": "completed_at" in raw,
        "manifest_key": raw.get("manifest_key", ""),
    }


def list_batches(status: JobStatusStore, limit: int = 50) -> list[dict[str, Any]]:
    """The ``limit`` newest batches, each as ``batch_progress`` reads it plus ``created_at``."""
    found = []
    for batch_id in cast("list[str]", status.client.zrevrange(batches_key(status), 0, limit - 1)):
        if (progress := batch_progress(status, batch_id)) is not None:
            created_at = float(status.client.hget(status.batch_key(batch_id), "created_at") or 0)
            found.append({**progress, "created_at": created_at})
    return found


def batch_job_ids(status: JobStatusStore, batch_id: str) -> list[str]:
    return cast("list[str]", status.client.zrange(items_key(status, batch_id), 0, -1))


def complete_if_done(status: JobStatusStore, store: ObjectStore, batch_id: str, url_ttl_s: int) -> bool:
    """Write the manifest and emit ``batch_completed`` if every job has finished (once). True if now."""
    key = status.batch_key(batch_id)
    total, finished = status.client.hmget(key, "total", "finished")
    if total is None or int(finished or 0) < int(total) or not status.client.hsetnx(key, "completing", 1):
        return False
    manifest_key = f"manifests/batches/{batch_id}.jsonl"
    store.put_bytes(manifest_key, _manifest(status, store, batch_id, url_ttl_s), "application/x-ndjson")
    status.client.hset(key, mapping={"manifest_key": manifest_key, "completed_at": time.time()})
    status.emit(f"batch:{batch_id}", "batch_completed", batch_id=batch_id, manifest_key=manifest_key,
                tenant=batch_tenant(status, batch_id))
    return True


def _manifest(status: JobStatusStore, store: ObjectStore, batch_id: str, url_ttl_s: int) -> bytes:
    lines = []
    for job_id in batch_job_ids(status, batch_id):
        record = status.get(job_id)
        if record is None:
            continue
        entry: dict[str, Any] = {"job_id": job_id, "state": record.state, "tenant": record.tenant,
                                 "models": record.models}
        if record.result_key:
            url = store.share_url(record.result_key, url_ttl_s)
            entry["result"] = {**record.artifacts.get("result", {}), "url": url}
        if record.error:
            entry["error"] = record.error
        lines.append(json.dumps(entry, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()


def retry_failed(status: JobStatusStore, broker: FramequeueBroker, batch_id: str) -> int:
    """Send the batch's failed jobs round again, from their first stage. Returns how many."""
    key = status.batch_key(batch_id)
    retried = []
    for job_id in batch_job_ids(status, batch_id):
        if status.state_of(job_id) != "failed":
            continue
        record = status.get(job_id)
        assert record is not None
        pipe = status.client.pipeline()
        pipe.hset(status.job_key(job_id), mapping={"state": "queued", "error": "", "stage": "", "stage_index": -1})
        pipe.zadd(status.active_key, {job_id: time.time()})
        pipe.persist(status.job_key(job_id))  # unfinished again: no longer expires
        pipe.hincrby(key, "finished", -1)
        pipe.hincrby(key, "n_failed", -1)
        pipe.hdel(key, "completed_at", "completing")
        pipe.execute()
        status.emit(job_id, "queued", error="retried with its batch")
        retried.append(JobSpec.model_validate(record.spec))
    catalog = catalog_of(get_settings())
    broker.enqueue_many([stage_message(stage_plan(spec.kind)[0], StageMessage(job=spec), catalog) for spec in retried])
    return len(retried)


def cancel_batch(
    status: JobStatusStore,
    broker: FramequeueBroker,
    batch_id: str,
    *,
    store: ObjectStore | None = None,
    url_ttl_s: int = 86_400,
) -> int:
    """Cancel every unfinished job of the batch (and, given a store, complete it). Returns how many."""
    cancelled = sum(status.cancel(job_id) for job_id in batch_job_ids(status, batch_id))
    if store is not None:
        complete_if_done(status, store, batch_id, url_ttl_s)
    return cancelled
