"""The front door for other systems: a Redis Stream that any language can write to.

Wire contract, version 1 (``queue_config/jobs.py`` has the job's fields)::

    XADD framequeue:intake * job '{"schema_version": 1, "prompt": "a fox", "kind": "image"}'

The reply to XADD is the entry id. The intake process validates each entry
and writes a receipt, readable with plain Redis commands::

    HGETALL framequeue:intake:receipt:<entry id>
      status   accepted | rejected
      job_id   the job's id (the entry's own id when the job names none)
      reason   why it was rejected, field by field

Each tenant (``framequeue tenants``) writes to a stream of its own, ``framequeue:intake:<tenant>``,
as its own Redis user that may add there and read its receipts
(``framequeue:intake:<tenant>:receipt:<entry id>``) and do nothing else; the intake reads the
shared stream (the operator's) and every enabled tenant's, and each job is the tenant's whose
stream it came from (whatever tenant the job names), held to the priority that tenant may claim and to
its quotas (``workers/tenants/quotas.py``: over one, the receipt is ``rejected`` with a reason that
starts ``quota:``).

Entries are read through a consumer group and acknowledged only after their
receipt is written, so an intake that dies loses nothing: another intake (or
the same one, restarted) claims what the dead one had read. Every entry gets a
receipt whatever its bytes: they are read raw and decoded here, an entry over
``MAX_ENTRY_BYTES`` is refused unparsed, JSON is parsed with bounded depth and
numbers (orjson), and an entry that has been handed out ``MAX_DELIVERIES``
times without an answer (its intake died on it) is refused rather than claimed
forever. An answered entry is deleted from the stream: the receipt keeps the answer.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from dramatiq.logging import get_logger
from pydantic import ValidationError

from queue_config.catalog import Catalog, ModelRefused, catalog_of
from queue_config.jobs import JobSpec
from queue_config.settings import get_settings
from queue_config.tenants import Tenant
from workers.broker import FramequeueBroker
from workers.doors.streams import bytes_client, ensure_group, read_groups
from workers.jobs.messages import describe_validation_error
from workers.jobs.record import JobStatusStore
from workers.jobs.screening import default_screen
from workers.jobs.submit import submit_job
from workers.outages import OUTAGE_ERRORS, serve_through_outages
from workers.tenants import (
    OverQuota,
    PriorityNotAllowed,
    RedisUsersRefused,
    TenantQuotas,
    Tenants,
    TenantStore,
    intake_stream,
    owner,
    receipt_prefix,
    stamped,
)

GROUP = "intake"
#: Receipts are kept this long.
RECEIPT_TTL_S = 7 * 24 * 3600
#: An entry read by an intake that has been silent this long is claimed by another.
CLAIM_IDLE_MS = 30_000
#: An entry larger than this (field names and values together) is refused unparsed.
MAX_ENTRY_BYTES = 64 * 1024
#: An entry handed out this many times without being answered is refused (its intakes died on it).
MAX_DELIVERIES = 3
#: How often the tenants' Redis users are set again from the store (a restarted Redis has none).
RESTORE_USERS_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Receipt:
    status: str
    job_id: str = ""
    reason: str = ""


class Intake:
    """Reads the intake stream, validates each entry, submits the good ones, answers every one."""

    def __init__(
        self,
        client: redis.Redis,
        broker: FramequeueBroker,
        status: JobStatusStore,
        namespace: str,
        *,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        catalog: Catalog | None = None,
    ) -> None:
        self.logger = get_logger(__name__, type(self))
        #: How long an entry read by a silent intake waits before this one claims it.
        self.claim_idle_ms = claim_idle_ms
        self.client = client
        self.broker = broker
        #: What the jobs may ask of the models (default: the process settings' catalog).
        self.catalog = catalog or catalog_of(get_settings())
        self.status = status
        self.namespace = namespace
        #: The operator's shared stream and its receipts.
        self.stream_key = intake_stream(namespace, None)
        self.receipt_prefix = receipt_prefix(namespace, None)
        self.tenants = TenantStore(client, namespace)
        self.quotas = TenantQuotas(client, namespace, status.active_key)
        #: Every stream read, with the tenant it belongs to (None: the operator).
        self.streams: dict[str, Tenant | None] = {self.stream_key: None}
        self.consumer = f"{socket.gethostname()}-{id(self)}"
        self.raw = bytes_client(client)
        self._users_restored_at = -RESTORE_USERS_INTERVAL_S
        ensure_group(client, self.stream_key, GROUP, start_id="0")

    def run(self, *, block_ms: int = 1000, stop_after_s: float | None = None) -> None:
        """Serve until interrupted (or for ``stop_after_s``, for tests)."""
        default_screen()  # loaded before the first read, so that no entry waits for the embedder
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        serve_through_outages(lambda: self.serve_once(block_ms=block_ms), logger=self.logger,
                              should_stop=lambda: deadline is not None and time.monotonic() >= deadline)

    def serve_once(self, *, block_ms: int = 1000, count: int = 100) -> int:
        """Handle what a dead intake left behind, then what is new. Returns how many entries.

        A dead intake's entries are claimed one at a time, each handled at once, so an entry's
        delivery count grows only while it is being handled (or had been read in a batch once).
        """
        self.refresh_streams()
        entries = read_groups(self.raw, list(self.streams), GROUP, self.consumer, claim_idle_ms=self.claim_idle_ms,
                              count=count, block_ms=block_ms, start_id="0", claim_count=1)
        read = [(stream, raw_id.decode() if isinstance(raw_id, bytes) else raw_id) for stream, (raw_id, _) in entries]
        for (stream, entry_id), deliveries, (_, (_, fields)) in zip(read, self._deliveries(read), entries, strict=True):
            tenant = self.streams.get(stream)
            receipt = self.answer(entry_id, fields, deliveries, tenant=tenant)
            receipt_key = receipt_prefix(self.namespace, tenant.id if tenant else None) + entry_id
            pipe = self.client.pipeline()
            answer: dict[Any, Any] = {"status": receipt.status, "job_id": receipt.job_id, "reason": receipt.reason}
            pipe.hset(receipt_key, mapping=answer)
            pipe.expire(receipt_key, RECEIPT_TTL_S)
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()
        return len(entries)

    def refresh_streams(self) -> None:
        """Read the shared stream and every enabled tenant's (as the store has them now, one read)."""
        tenants = [tenant for tenant in self.tenants.all() if tenant.enabled]
        streams: dict[str, Tenant | None] = {self.stream_key: None}
        streams.update((intake_stream(self.namespace, tenant.id), tenant) for tenant in tenants)
        for stream in streams.keys() - self.streams.keys():
            ensure_group(self.client, stream, GROUP, start_id="0")
        self.streams = streams
        if tenants and time.monotonic() - self._users_restored_at >= RESTORE_USERS_INTERVAL_S:
            self._users_restored_at = time.monotonic()
            try:
                Tenants(self.client, self.namespace).restore_redis_users()
            except RedisUsersRefused as refused:
                self.logger.warning("Tenants' Redis users could not be set: %s", refused)

    def answer(self, entry_id: str, fields: dict[bytes, bytes], deliveries: int = 1, *,
               tenant: Tenant | None = None) -> Receipt:
        """The receipt of one raw entry; whatever its bytes, never an exception (bar Redis being down)."""
        try:
            if deliveries > MAX_DELIVERIES:
                return Receipt("rejected", reason=f"the entry was handed out {MAX_DELIVERIES} times without an "
                                                  "answer (an intake stopped while handling it); not tried again")
            if sum(len(name) + len(value) for name, value in fields.items()) > MAX_ENTRY_BYTES:
                return Receipt("rejected", reason=f"the entry is larger than {MAX_ENTRY_BYTES} bytes")
            try:
                decoded = {name.decode(): value.decode() for name, value in fields.items()}
            except UnicodeDecodeError:
                return Receipt("rejected", reason="field names and values must be UTF-8 text")
            return self.receive(entry_id, decoded, tenant=tenant)
        except OUTAGE_ERRORS:
            raise
        except Exception as error:  # one entry must never stop the door for everyone
            self.logger.exception("Intake entry %s could not be handled.", entry_id)
            return Receipt("rejected", reason=f"the entry could not be handled ({type(error).__name__})")

    def _deliveries(self, entries: list[tuple[str, str]]) -> list[int]:
        """How many times each (stream, entry id) has been handed out, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for stream, entry_id in entries:
            pipe.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
        return [int(pending[0]["times_delivered"]) if pending else 0 for pending in pipe.execute()]

    def receive(self, entry_id: str, fields: dict[str, str], *, tenant: Tenant | None = None) -> Receipt:
        """Validate and submit one entry of ``tenant``'s stream (None: the operator's)."""
        raw = fields.get("job")
        if raw is None:
            return Receipt("rejected", reason="the entry has no 'job' field (XADD <stream> * job '<json>')")
        try:
            document = orjson.loads(raw)
            if not isinstance(document, dict):
                return Receipt("rejected", reason="'job' must be a JSON object")
            document.pop("tenant", None)  # the stream says whose the job is
            document.setdefault("id", f"intake-{tenant.id}-{entry_id}" if tenant else f"intake-{entry_id}")
            spec = JobSpec.model_validate(document)
        except orjson.JSONDecodeError as error:
            return Receipt("rejected", reason=f"'job' is not valid JSON: {error.msg} at char {error.pos}")
        except ValidationError as error:
            return Receipt("rejected", job_id=str(document.get("id", "")), reason=describe_validation_error(error))
        try:
            spec = stamped(self.catalog.admit(spec), tenant)
        except (ModelRefused, PriorityNotAllowed) as refused:
            return Receipt("rejected", job_id=spec.id, reason=str(refused))
        try:
            with self.quotas.admitting(tenant, [spec.id]):
                submission = submit_job(self.broker, self.status, spec, catalog=self.catalog)
        except OverQuota as over:
            return Receipt("rejected", job_id=spec.id, reason=str(over))
        if not submission.created and self.status.tenant_of(spec.id) != owner(tenant):
            return Receipt("rejected", job_id=spec.id, reason="another tenant's job has this id; choose another")
        if submission.state == "blocked":
            return Receipt("rejected", job_id=spec.id, reason=submission.reason)
        self.logger.info("Accepted job %s from intake entry %s.", spec.id, entry_id)
        return Receipt("accepted", job_id=spec.id)
