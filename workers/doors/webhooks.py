"""Webhooks: each job's state changes, POSTed to the URL the job names, signed, retried.

A ``webhooks`` process follows the event stream through a consumer group, so
stages never wait on a receiver. Each event of a job that names a URL is handed
from the stream to the delivery set (a sorted set scored by when the delivery
is due) in one transaction with its acknowledgement. A sender claims a due
delivery by moving its score to a lease deadline, never by removing it: the
delivery leaves the set only after a 2xx answer or once its giving up is
recorded, and one whose sender died mid-attempt is due again when its lease
ends. So delivery is at least once, across crashes (receivers dedupe on
``webhook-id``). A failed delivery is retried with doubling backoff; after the
last attempt the job's record says why.

Deliveries run concurrently in a small thread pool, at most a few per host
(webhook_slots.py), each attempt checked by the URL policy (webhook_policy.py) and
bounded in time and in what it reads (webhook_post.py): a slow or hostile receiver
holds only its own deliveries. The deliveries due are looked at ``SCAN_COUNT`` at a
time, oldest first; those of a host whose slots are taken wait.

The body is the event (``id``, ``job_id``, ``event``, ``at``, ``stage``, ``error``) with the
job's ``state`` when it was handed on and its ``result_url`` once it has one; it is signed in
the Standard Webhooks scheme (webhook_signing.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from dramatiq.logging import get_logger

from workers.doors.streams import ensure_group, read_group
from workers.doors.webhook_policy import WebhookPolicy, WebhookRefused, WebhookUnresolved
from workers.doors.webhook_post import DeliveryFailed, post
from workers.doors.webhook_signing import signed_headers, signing_key
from workers.doors.webhook_slots import HostSlots
from workers.jobs.record import JobStatusStore
from workers.outages import OUTAGE_ERRORS, serve_through_outages

GROUP = "webhooks"
#: How long one delivery attempt may take, connecting and reading the answer together.
TIMEOUT_S = 10.0
#: An event read by a sender that has been silent this long is handed on by another.
CLAIM_IDLE_MS = 30_000
#: A claimed delivery is due again this long after its attempt's time is up (its sender died).
LEASE_MARGIN_S = 5.0
#: Due deliveries looked at in one pass, to fill the free slots.
SCAN_COUNT = 500
_CLAIM_LUA = (Path(__file__).parent / "webhook_claim.lua").read_text()


class WebhookSender:
    """Delivers events of jobs that name a ``webhook_url``."""

    def __init__(
        self,
        status: JobStatusStore,
        secret: str,
        *,
        max_attempts: int = 6,
        first_retry_s: float = 2.0,
        timeout_s: float = TIMEOUT_S,
        policy: WebhookPolicy | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.key = signing_key(secret)
        self.logger = get_logger(__name__, type(self))
        self.status = status
        self.client = status.client
        self.max_attempts = max_attempts
        self.first_retry_s = first_retry_s
        self.timeout_s = timeout_s
        #: How long a claimed delivery stays another sender's: longer than its attempt can take.
        self.lease_s = timeout_s + LEASE_MARGIN_S
        #: Where deliveries may go (by default: public https destinations only).
        self.policy = policy or WebhookPolicy()
        self.tls = tls
        self.slots = HostSlots()
        self._pool = ThreadPoolExecutor(self.slots.total, thread_name_prefix="webhook")
        self._closed = False
        #: Deliveries (JSON of url, event and attempt number), scored by when they are due.
        self.retry_key = f"{status.namespace}:webhooks:retry"
        self._claim = self.client.register_script(_CLAIM_LUA)
        self.consumer = f"{socket.gethostname()}-{id(self)}"
        ensure_group(self.client, status.events_key, GROUP, start_id="$")

    def run(self, *, stop_after_s: float | None = None) -> None:
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        try:
            serve_through_outages(self.serve_once, logger=self.logger,
                                  should_stop=lambda: deadline is not None and time.monotonic() >= deadline)
        finally:
            self.close()

    def join(self, timeout_s: float = 30.0) -> None:
        """Wait until no delivery is in flight (each ends within ``timeout_s`` of its start)."""
        if not self.slots.wait_idle(timeout_s):
            raise TimeoutError(f"webhook deliveries still in flight after {timeout_s:g} s")

    def close(self) -> None:
        """Let the deliveries in flight end; start no more (one claimed meanwhile is due again after its lease)."""
        self._closed = True
        self._pool.shutdown(wait=True)

    def serve_once(self, *, block_ms: int = 500) -> None:
        """Start the deliveries that are due, then hand on new events (and those a dead sender had read).

        Deliveries run in the pool: ``join`` waits for them.
        """
        self._start_due()
        entries = read_group(self.client, self.status.events_key, GROUP, self.consumer, claim_idle_ms=CLAIM_IDLE_MS,
                             count=100, block_ms=block_ms, start_id="$")
        if entries:
            self._hand_on(entries)
            self._start_due()

    def _hand_on(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Put the events of jobs that name a URL in the delivery set, due now, acknowledging them with it."""
        deliveries = {}
        for entry_id, fields in entries:
            addressed = self._addressed(entry_id, fields)
            if addressed:
                deliveries[_delivery(*addressed, 1)] = time.time()
        pipe = self.client.pipeline(transaction=True)
        if deliveries:
            pipe.zadd(self.retry_key, deliveries)
        pipe.xack(self.status.events_key, GROUP, *(entry_id for entry_id, _ in entries))
        pipe.execute()

    def _start_due(self) -> None:
        """Claim the due deliveries there are free slots for, and start them."""
        if self._closed or not self.slots.free():
            return
        now = time.time()
        taken: list[tuple[str, str]] = []
        try:
            for member in cast("list[str]", self.client.zrangebyscore(self.retry_key, "-inf", now, 0, SCAN_COUNT)):
                host = _host(member)
                if self.slots.take(host):
                    taken.append((member, host))
                if not self.slots.free():
                    break
            claimed = set(cast("list[str]", self._claim(
                keys=[self.retry_key], args=[now, now + self.lease_s, *(member for member, _ in taken)]))
            ) if taken else set()
        except BaseException:
            for _, host in taken:
                self.slots.give_back(host)
            raise
        for member, host in taken:
            if member in claimed and not self._closed:
                self._pool.submit(self._deliver_in_slot, member, host)
            else:
                self.slots.give_back(host)

    def _deliver_in_slot(self, member: str, host: str) -> None:
        """Deliver, give the slot back, and fill it again."""
        try:
            delivery = json.loads(member)
            self._deliver(member, delivery["url"], delivery["event"], delivery["attempt"])
        except Exception:  # e.g. Redis unreachable while settling: the lease makes it due again
            self.logger.exception("A webhook delivery was not settled; it is due again when its lease ends.")
        finally:
            self.slots.give_back(host)
        with contextlib.suppress(*OUTAGE_ERRORS):
            self._start_due()

    def _addressed(self, entry_id: str, fields: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
        """Where an event goes and what is sent: None unless its job (or batch) names a URL.

        ``progress`` events are not sent: a stage writes several a second, which would cost each
        receiver a request per step; a receiver that wants them follows the job's SSE stream.
        """
        if fields.get("event") == "progress":
            return None
        event: dict[str, Any] = {"id": entry_id, **fields}
        if fields.get("batch_id") and fields.get("event", "").startswith("batch_"):
            url = self.client.hget(self.status.batch_key(fields["batch_id"]), "webhook_url")
            return (cast(str, url), event) if url else None
        spec, state, stage, result_url = cast("list[str | None]", self.client.hmget(
            self.status.job_key(fields.get("job_id", "")), "spec", "state", "stage", "result_url"))
        url = json.loads(spec).get("webhook_url") if spec else None
        if not url:
            return None
        event.update(state=state or "", stage=fields.get("stage") or stage or "")
        if result_url:
            event["result_url"] = result_url
        return cast(str, url), event

    def _deliver(self, member: str, url: str, event: dict[str, Any], attempt: int) -> None:
        """One attempt at a claimed delivery; it leaves the delivery set only once settled."""
        try:
            problem = self._attempt(url, event)
        except WebhookRefused as refusal:
            self._give_up(member, event, f"webhook refused: {refusal}")
            return
        if problem is None:
            self.client.zrem(self.retry_key, member)
        elif attempt >= self.max_attempts:
            self._give_up(member, event, f"webhook gave up after {attempt} attempts: {problem}")
        else:
            due_s = time.time() + self.first_retry_s * 2 ** (attempt - 1)
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.retry_key, member)
            pipe.zadd(self.retry_key, {_delivery(url, event, attempt + 1): due_s})
            pipe.execute()

    def _attempt(self, url: str, event: dict[str, Any]) -> str | None:
        """POST ``event`` to ``url``: None once answered with a 2xx, else what went wrong."""
        body = json.dumps(event, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "framequeue-webhooks",
                   **signed_headers(self.key, str(event["id"]), int(time.time()), body)}
        started = time.monotonic()  # one deadline for the lookup, the connection and the answer
        try:
            destination = self.policy.destination(url, timeout_s=self.timeout_s)
            code = post(destination, body, headers, deadline_s=self.timeout_s, tls=self.tls, started_at=started)
        except (WebhookUnresolved, DeliveryFailed) as error:
            return str(error)
        if 300 <= code < 400:
            return f"HTTP {code} (redirects are not followed)"
        return None if 200 <= code < 300 else f"HTTP {code}"

    def _give_up(self, member: str, event: dict[str, Any], reason: str) -> None:
        """Record on the job (or batch) why its event was not delivered, and only then drop the delivery."""
        owner = self.status.batch_key(event["batch_id"]) if event.get("batch_id") else self.status.job_key(
            event["job_id"])
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(owner, "webhook_error", reason)
        pipe.zrem(self.retry_key, member)
        pipe.execute()
        self.logger.warning("%s: %s.", owner, reason)


def _host(member: str) -> str:
    """The host a delivery goes to: what the per-host slots count."""
    try:
        return (urlsplit(json.loads(member)["url"]).hostname or "").rstrip(".")
    except (ValueError, KeyError, TypeError):
        return ""


def _delivery(url: str, event: dict[str, Any], attempt: int) -> str:
    """A delivery as the delivery set holds it."""
    return json.dumps({"url": url, "event": event, "attempt": attempt}, sort_keys=True)
