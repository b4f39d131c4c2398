"""Fair share: tenants take the fleet by weight, whoever submitted first and however much.

A job that carries a tenant is accepted with its first stage's message on a pending list of its own
tenant and stage queue (``{namespace}:pending:{queue}:{tenant}``) instead of on the stage queue, in
the same acceptance script that writes its record (``accept_jobs``). The dispatcher
(``framequeue dispatcher``) moves messages from those lists onto the stage queues by deficit round
robin over the tenants with pending work, each tenant's turn as large as its weight, and only while
fewer than ``window`` of the jobs it admitted to a stage queue are unfinished. The queues therefore
stay shallow: a job one tenant submits behind another tenant's 10,000 waits for the next free place
in the window, not for the backlog, and two tenants with backlogs get places in the ratio of their
weights. Jobs without a tenant (the operator's) go straight to their stage queue, as before.

A move is one script (``fair_move.lua``): the message leaves the pending list and lands on its queue
under the id it was accepted with, and the job's in-flight pointer follows it, so a crash at any
point leaves the message in exactly one place. While a message waits, its pointer names the pending
list, whose ``.msgs`` hash holds its body as a queue's does, so the reconciler sees it as waiting,
not lost.

The dispatcher costs nothing while no tenant has pending work: it blocks on a wake list that every
acceptance of a tenant's job pushes to. While work is pending it wakes on the job event stream (a
job that finishes frees a place), never on a timer alone. One dispatcher acts at a time (a lease),
so it may run in several processes for availability.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import redis
from dramatiq.logging import get_logger

from workers.consumer import wake_key
from workers.jobs.record import TERMINAL_STATES, JobStatusStore, QueuedMessage
from workers.outages import serve_through_outages

#: Unfinished jobs the dispatcher keeps admitted to each stage queue (``FRAMEQUEUE_FAIR_SHARE_WINDOW``).
WINDOW = 16
#: Seconds an idle dispatcher blocks on its wake list before it looks again (and renews its lease).
IDLE_WAIT_S = 2.0
#: Milliseconds a busy dispatcher (work pending, window full) blocks on the event stream at most.
BUSY_WAIT_MS = 500

_PENDING = "pending:"
_MOVE_LUA = (Path(__file__).parent / "fair_move.lua").read_text()


def pending_queue_name(queue_name: str, tenant: str) -> str:
    """The queue name (under the namespace) of ``tenant``'s pending list for ``queue_name``."""
    return f"{_PENDING}{queue_name}:{tenant}"


def parse_pending(name: str) -> tuple[str, str]:
    """The stage queue and tenant a pending list's queue name names."""
    queue_name, _, tenant = name.removeprefix(_PENDING).rpartition(":")
    return queue_name, tenant


def registry_key(namespace: str) -> str:
    """The set of pending lists' queue names that have ever held a message."""
    return f"{namespace}:fair:pending"


def dispatcher_wake_key(namespace: str) -> str:
    return f"{namespace}:fair:wake"


def admitted_key(namespace: str, queue_name: str) -> str:
    """The jobs the dispatcher moved onto ``queue_name`` that it has not yet seen finish."""
    return f"{namespace}:fair:admitted:{queue_name}"


def hold(message: QueuedMessage, tenant: str | None) -> QueuedMessage:
    """Where a job's first message is accepted: its tenant's pending list, or its queue for no tenant."""
    return replace(message, queue_name=pending_queue_name(message.queue_name, tenant)) if tenant else message


def announce(client: redis.Redis, namespace: str, held: Iterable[QueuedMessage]) -> list[str]:
    """Register the pending lists of ``held`` before they are written (so the dispatcher finds them)."""
    names = sorted({message.queue_name for message in held if message.queue_name.startswith(_PENDING)})
    if names:
        client.sadd(registry_key(namespace), *names)
    return names


def wake_dispatcher(client: redis.Redis, namespace: str) -> None:
    """Tell an idle dispatcher that pending work arrived (a missed token costs one ``IDLE_WAIT_S``)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.lpush(dispatcher_wake_key(namespace), 1)
        pipe.ltrim(dispatcher_wake_key(namespace), 0, 7)
        pipe.execute()


def pending_depths(client: redis.Redis, namespace: str) -> dict[tuple[str, str], int]:
    """Messages waiting on each (stage queue, tenant) pending list that holds any."""
    names = sorted(cast("set[str]", client.smembers(registry_key(namespace))))
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(f"{namespace}:{name}")
        lengths = pipe.execute()
    return {parse_pending(name): int(length) for name, length in zip(names, lengths, strict=True) if length}


class DeficitRoundRobin:
    """Deficit round robin over tenants, one pick at a time.

    Tenants take turns in the order they first had work. A tenant's turn credits it its weight (over
    the smallest weight among those with work, so the lightest gets one pick a round); it is picked
    while its credit lasts, then the next tenant's turn begins. A tenant that runs out of work leaves
    the round and forfeits its credit, so idling saves no credit for later; one that comes back joins
    at the end of the round.
    """

    def __init__(self) -> None:
        self._order: list[str] = []
        self._credit: dict[str, float] = {}
        self._current: str | None = None

    def pick(self, weights: Mapping[str, float]) -> str | None:
        """The tenant to serve next, of those in ``weights`` (the tenants with work and their weights)."""
        self._order = [tenant for tenant in self._order if tenant in weights]
        self._order += sorted(tenant for tenant in weights if tenant not in self._order)
        self._credit = {tenant: self._credit.get(tenant, 0.0) for tenant in self._order}
        if not self._order:
            self._current = None
            return None
        unit = min(weights.values())
        if self._current not in self._credit:  # its turn ended with its work: the next in the round begins
            self._current = None
        while True:
            if self._current is not None and self._credit[self._current] >= 1.0:
                self._credit[self._current] -= 1.0
                return self._current
            after = self._order.index(self._current) + 1 if self._current is not None else 0
            self._current = self._order[after % len(self._order)]
            self._credit[self._current] += weights[self._current] / unit


@dataclass(frozen=True)
class DispatchPass:
    """What one pass did: messages moved per (stage queue, tenant), and whether any still wait."""

    moved: dict[tuple[str, str], int]
    waiting: bool


class FairShareDispatcher:
    """Moves tenants' pending first-stage messages onto their stage queues by weighted fair share.

    Parameters:
        status: The job records (its client must decode responses); pending lists live beside them.
        weights: The tenants' weights now (``weights_from_tenants``); a tenant it lacks weighs 1.
        window: Unfinished jobs admitted to each stage queue at most.
        may_start: Whether a tenant's job would start now; one that would only be held at its first
            stage by the tenant's quotas (``TenantQuotas.may_start``) stays pending, so that held jobs
            never fill the window that other tenants' jobs wait for.
    """

    def __init__(
        self, status: JobStatusStore, weights: Callable[[], Mapping[str, float]], *, window: int = WINDOW,
        may_start: Callable[[str], bool] = lambda tenant: True,
    ) -> None:
        self.status, self.weights, self.window = status, weights, max(1, window)
        self.may_start = may_start
        self.client, self.namespace = status.client, status.namespace
        self.lease_key = f"{self.namespace}:dispatcher:lease"
        self.logger = get_logger(__name__, type(self))
        self._move = self.client.register_script(_MOVE_LUA)
        self._rounds: dict[str, DeficitRoundRobin] = {}
        self._last_event: str | None = None

    def run_once(self) -> DispatchPass:
        """Fill each stage queue's free places in the window from the pending lists, by fair share."""
        depths = pending_depths(self.client, self.namespace)
        by_queue: dict[str, dict[str, int]] = {}
        for (queue_name, tenant), depth in depths.items():
            by_queue.setdefault(queue_name, {})[tenant] = depth
        moved: dict[tuple[str, str], int] = {}
        waiting = False
        weights = dict(self.weights()) if by_queue else {}
        startable = {tenant: self.may_start(tenant) for backlog in by_queue.values() for tenant in backlog}
        for queue_name, backlog in by_queue.items():
            held = {tenant: depth for tenant, depth in backlog.items() if not startable[tenant]}
            backlog = {tenant: depth for tenant, depth in backlog.items() if startable[tenant]}
            free = self.window - self.admitted(queue_name)
            drr = self._rounds.setdefault(queue_name, DeficitRoundRobin())
            while free > 0 and backlog:
                picked = drr.pick({name: weights.get(name, 1.0) for name in backlog})
                assert picked is not None
                tenant = picked
                job_id = self._move_one(queue_name, tenant)
                backlog[tenant] -= 1
                if job_id is None or backlog[tenant] <= 0:
                    del backlog[tenant]
                if job_id:  # a message whose body was gone takes no place
                    free -= 1
                    moved[(queue_name, tenant)] = moved.get((queue_name, tenant), 0) + 1
            waiting = waiting or bool(backlog) or bool(held)
        return DispatchPass(moved, waiting)

    def admitted(self, queue_name: str) -> int:
        """Unfinished jobs admitted to ``queue_name``; finished (or expired) ones leave the set here."""
        key = admitted_key(self.namespace, queue_name)
        job_ids = sorted(cast("set[str]", self.client.smembers(key)))
        if not job_ids:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.status.job_key(job_id), "state")
            states = pipe.execute()
        done = [job_id for job_id, state in zip(job_ids, states, strict=True)
                if state is None or state in TERMINAL_STATES]
        if done:
            self.client.srem(key, *done)
        return len(job_ids) - len(done)

    def _move_one(self, queue_name: str, tenant: str) -> str | None:
        pending = pending_queue_name(queue_name, tenant)
        ns = self.namespace
        keys = [f"{ns}:{pending}", f"{ns}:{pending}.msgs", f"{ns}:{queue_name}", f"{ns}:{queue_name}.msgs",
                self.status.inflight_key, admitted_key(ns, queue_name), wake_key(ns, queue_name)]
        result = self._move(keys=keys, args=[pending, queue_name])
        return None if result is None else str(result)

    def serve_once(self, token: str) -> DispatchPass | None:
        """One pass if this process holds the lease, then block until there may be more to do."""
        if not self._hold_lease(token, lease_ms=int(IDLE_WAIT_S * 3000)):
            self._last_event = None
            self.client.blpop([dispatcher_wake_key(self.namespace)], timeout=IDLE_WAIT_S)
            return None
        if self._last_event is None:  # events after this id wake a busy pass
            newest = cast("list[Any]", self.client.xrevrange(self.status.events_key, count=1))
            self._last_event = str(newest[0][0]) if newest else "0-0"
        done = self.run_once()
        if done.moved:
            self.logger.debug("Dispatched %s.", done.moved)
        if done.waiting:
            since = self._last_event
            read = cast("list[Any]", self.client.xread({self.status.events_key: since}, block=BUSY_WAIT_MS))
            if read:
                self._last_event = read[0][1][-1][0]
        else:
            self._last_event = None
            self.client.blpop([dispatcher_wake_key(self.namespace)], timeout=IDLE_WAIT_S)
        return done

    def run_forever(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` while this process holds the lease; ride out Redis outages."""
        token = uuid.uuid4().hex
        serve_through_outages(lambda: self.serve_once(token), should_stop=stop.is_set, logger=self.logger,
                              wait=stop.wait)

    def _hold_lease(self, token: str, lease_ms: int) -> bool:
        if self.client.set(self.lease_key, token, nx=True, px=lease_ms):
            return True
        if self.client.get(self.lease_key) == token:
            self.client.pexpire(self.lease_key, lease_ms)
            return True
        return False


def tenants_may_start(client: redis.Redis, namespace: str, unfinished_key: str) -> Callable[[str], bool]:
    """Whether each tenant's job would start now, by its quotas as the tenant store holds them."""
    from workers.tenants.quotas import TenantQuotas
    from workers.tenants.store import TenantStore

    store, quotas = TenantStore(client, namespace), TenantQuotas(client, namespace, unfinished_key)

    def may_start(tenant_id: str) -> bool:
        tenant = store.get(tenant_id)
        return tenant is None or quotas.may_start(tenant)

    return may_start


def weights_from_tenants(client: redis.Redis, namespace: str) -> Callable[[], Mapping[str, float]]:
    """The tenants' weights as the tenant store holds them, read at each call."""
    from workers.tenants.store import TenantStore

    store = TenantStore(client, namespace)
    return lambda: {tenant.id: tenant.weight for tenant in store.all()}
