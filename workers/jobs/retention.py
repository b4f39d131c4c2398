"""Trims what finished jobs leave in Redis once the retention has passed.

A finished job's record expires by itself (``transition.lua`` sets its TTL); what else it left
does not: its entries in the job index and its tenant's index, its events, its place in the
cancelled set, the reasons its messages were dead-lettered, its batch's hash and items.
``RetentionTrimmer.trim`` removes each of those by the age it records, in bounded pages; the
reconciler runs it on every pass. Outputs and manifests in storage are not touched.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from workers.jobs.record import JobStatusStore

#: Entries looked at per script run or command (index entries, batches, dead-letter reasons).
PAGE_SIZE = 500

_TRIM_INDEX_LUA = (Path(__file__).parent / "trim_index.lua").read_text()


@dataclass(frozen=True)
class Trimmed:
    """How many of each kind of trace one trim removed."""

    events: int = 0
    index_entries: int = 0
    cancelled: int = 0
    dead_letters: int = 0
    batches: int = 0

    @property
    def total(self) -> int:
        return self.events + self.index_entries + self.cancelled + self.dead_letters + self.batches


class RetentionTrimmer:
    """Removes the traces of jobs older than the retention.

    Parameters:
        status: The job records.
        retention_s: How old a trace must be to go; the store's own (its records' expiry) by default.
        page_size: Entries looked at per script run or command.
    """

    def __init__(self, status: JobStatusStore, *, retention_s: float | None = None, page_size: int = PAGE_SIZE) -> None:
        self.status = status
        self.retention_s = status.retention_s if retention_s is None else retention_s
        self.page_size = page_size
        #: Batch ids scored by when they were submitted, and a batch's items (see workers/batches/store.py).
        self.batches_key = f"{status.namespace}:batches"
        self._trim_index = status.client.register_script(_TRIM_INDEX_LUA)

    def trim(self, now: float | None = None) -> Trimmed:
        """Remove everything older than ``now`` (epoch s) minus the retention."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        return Trimmed(
            events=self.trim_events(cutoff), index_entries=self.trim_index(cutoff),
            cancelled=int(self.status.client.zremrangebyscore(self.status.cancelled_key, "-inf", f"({cutoff}")),
            dead_letters=self.trim_dead_letters(cutoff), batches=self.trim_batches(cutoff),
        )

    def trim_events(self, cutoff: float) -> int:
        """Events appended before ``cutoff``: stream ids start with their time in ms (MINID, exact)."""
        return int(self.status.client.xtrim(self.status.events_key, minid=f"{int(cutoff * 1000)}-0",
                                            approximate=False))

    def trim_index(self, cutoff: float) -> int:
        """Entries of jobs created before ``cutoff`` whose record has expired, in the job index (counted)
        and in each tenant's index.

        Only those can have expired: a record outlives its job's creation by at least the retention.
        """
        status = self.status
        for tenant in cast("set[str]", status.client.smembers(status.tenants_key)):
            self._trim_one_index([status.tenant_index_key(tenant), status.tenants_key], cutoff, tenant)
        return self._trim_one_index([status.index_key], cutoff)

    def _trim_one_index(self, keys: list[str], cutoff: float, *tenant: str) -> int:
        removed, offset = 0, 0
        while True:
            looked_at, gone = cast("list[int]", self._trim_index(
                keys=keys, args=[self.status.namespace, cutoff, offset, self.page_size, *tenant]))
            removed += gone
            offset += looked_at - gone
            if looked_at < self.page_size:
                return removed

    def trim_dead_letters(self, cutoff: float) -> int:
        """Dead-letter reasons recorded before ``cutoff`` (their JSON's ``at``; one that cannot be dated goes too)."""
        client, key = self.status.client, self.status.dead_letters_key
        removed, cursor = 0, 0
        while True:
            cursor, page = cast("tuple[int, dict[str, str]]", client.hscan(key, cursor, count=self.page_size))
            old = [message_id for message_id, raw in page.items() if _recorded_at(raw) < cutoff]
            if old:
                removed += int(client.hdel(key, *old))
            if cursor == 0:
                return removed

    def trim_batches(self, cutoff: float) -> int:
        """Batches completed before ``cutoff``: all their jobs finished by then, so their records are gone.

        A batch that never completed (its manifest never written) keeps its hash and items.
        """
        client, removed, offset = self.status.client, 0, 0
        while batch_ids := cast("list[str]", client.zrangebyscore(
                self.batches_key, "-inf", f"({cutoff}", start=offset, num=self.page_size)):
            pipe = client.pipeline(transaction=False)
            for batch_id in batch_ids:
                pipe.hget(self.status.batch_key(batch_id), "completed_at")
            done = [batch_id for batch_id, completed_at in zip(batch_ids, pipe.execute(), strict=True)
                    if completed_at is not None and float(completed_at) < cutoff]
            for batch_id in done:
                key = self.status.batch_key(batch_id)
                pipe.delete(key, f"{key}:items")
            if done:
                pipe.zrem(self.batches_key, *done)
                pipe.execute()
            removed += len(done)
            offset += len(batch_ids) - len(done)
        return removed


def _recorded_at(raw: str) -> float:
    try:
        return float(json.loads(raw).get("at", 0))
    except (ValueError, TypeError, AttributeError):
        return 0.0
