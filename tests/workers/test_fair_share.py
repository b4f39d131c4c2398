"""Fair share: tenants' jobs wait on pending lists and the dispatcher moves them by weight, losing nothing."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from pathlib import Path

import redis

from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.settings import Settings
from queue_config.tenants import Quotas, Tenant
from tests.conftest import settings_env
from tests.queues import PROMPT_QUEUE, default_queue
from tests.servers import WorkerProcess, wait_for
from workers.broker import FramequeueBroker, build_broker
from workers.jobs import fair_share
from workers.jobs.fair_share import DeficitRoundRobin, FairShareDispatcher, pending_queue_name, tenants_may_start
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.jobs.submit import accept_jobs
from workers.tenants.quotas import TenantQuotas, running_slots
from workers.tenants.store import TenantStore

BATCH_QUEUE = default_queue("prompt_enhance", batch=True)


def job(tenant: str | None, number: int = 0, priority: Priority = Priority.interactive) -> JobSpec:
    return JobSpec(prompt=f"a tin robot {number}", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                   tenant=tenant, priority=priority)


def quiet(settings: Settings) -> tuple[Settings, JobStatusStore, FramequeueBroker]:
    """A namespace no worker serves, so what is submitted stays where it was put."""
    namespaced = settings.model_copy(update={"namespace": f"fair-{uuid.uuid4().hex[:8]}"})
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), namespaced.namespace)
    return namespaced, status, build_broker(namespaced)


def run_queue(status: JobStatusStore, queue: str, count: int) -> list[str]:
    """Play a worker: take up to ``count`` messages off ``queue`` and finish their jobs. Their job ids, in order."""
    ns, client, done = status.namespace, status.client, []
    for _ in range(count):
        redis_id = client.lpop(f"{ns}:{queue}")
        if redis_id is None:
            break
        body = client.hget(f"{ns}:{queue}.msgs", redis_id)
        client.hdel(f"{ns}:{queue}.msgs", redis_id)
        job_id = json.loads(body)["args"][0]["job"]["id"]
        status.transition(job_id, "succeeded")
        done.append(job_id)
    return done


def tenant_of(specs: list[JobSpec]) -> dict[str, str | None]:
    return {spec.id: spec.tenant for spec in specs}


def test_deficit_round_robin_shares_picks_by_weight() -> None:
    drr = DeficitRoundRobin()
    picks = Counter(drr.pick({"a": 1.0, "b": 3.0}) for _ in range(400))
    assert abs(picks["a"] - 100) <= 3 and abs(picks["b"] - 300) <= 3


def test_deficit_round_robin_skips_the_idle_and_takes_in_newcomers_at_once() -> None:
    drr = DeficitRoundRobin()
    assert drr.pick({}) is None
    assert {drr.pick({"a": 1.0}) for _ in range(5)} == {"a"}  # alone, a takes every pick
    # b arrives behind a's long run: it is served within one round, not after a's work.
    assert "b" in [drr.pick({"a": 1.0, "b": 1.0}) for _ in range(2)]
    # a tenant with nothing pending is never picked, and comes back without saved credit.
    assert {drr.pick({"b": 1.0}) for _ in range(10)} == {"b"}
    assert Counter(drr.pick({"a": 1.0, "b": 1.0}) for _ in range(10)) == {"a": 5, "b": 5}


def test_a_tenant_job_waits_on_its_pending_list_and_is_not_lost(settings) -> None:
    _, status, broker = quiet(settings)
    spec, operators = job("acme"), job(None, 1)

    assert accept_jobs(broker, status, [spec, operators]) == [True, True]

    ns, pending = status.namespace, pending_queue_name(PROMPT_QUEUE, "acme")
    where, redis_id = status.client.hget(status.inflight_key, spec.id).split("\t")
    assert where == pending and status.client.lrange(f"{ns}:{pending}", 0, -1) == [redis_id]
    assert status.client.hexists(f"{ns}:{pending}.msgs", redis_id)
    assert Reconciler(status, broker).lost([spec.id, operators.id]) == []
    # The operator's job (no tenant) went straight to its queue, as before.
    assert status.client.hget(status.inflight_key, operators.id).split("\t")[0] == PROMPT_QUEUE
    assert status.client.llen(f"{ns}:{PROMPT_QUEUE}") == 1
    assert status.client.llen(fair_share.dispatcher_wake_key(ns)) >= 1  # an idle dispatcher is woken


def test_the_dispatcher_keeps_the_window_and_moves_each_message_in_one_script(settings, monkeypatch) -> None:
    _, status, broker = quiet(settings)
    specs = [job("acme", n) for n in range(6)]
    accept_jobs(broker, status, specs)
    dispatcher = FairShareDispatcher(status, lambda: {}, window=4)
    commands: list[str] = []
    real = status.client.execute_command
    monkeypatch.setattr(status.client, "execute_command",
                        lambda *args, **kw: commands.append(str(args[0]).upper()) or real(*args, **kw))

    assert dispatcher._move_one(PROMPT_QUEUE, "acme") == specs[0].id
    # Out of the list and onto the queue in one script (loaded first on its first use): nothing falls between.
    assert set(commands) - {"SCRIPT LOAD"} == {"EVALSHA"}
    monkeypatch.undo()

    done = dispatcher.run_once()
    assert done.moved == {(PROMPT_QUEUE, "acme"): 3} and done.waiting
    ns = status.namespace
    assert status.client.llen(f"{ns}:{PROMPT_QUEUE}") == 4
    assert status.client.llen(f"{ns}:{pending_queue_name(PROMPT_QUEUE, 'acme')}") == 2
    assert status.client.hget(status.inflight_key, specs[0].id).split("\t")[0] == PROMPT_QUEUE
    assert dispatcher.run_once().moved == {}  # the window is full until a job finishes
    run_queue(status, PROMPT_QUEUE, 1)
    assert dispatcher.run_once().moved == {(PROMPT_QUEUE, "acme"): 1}
    assert Reconciler(status, broker).lost([spec.id for spec in specs]) == []


def test_dispatcher_restarts_lose_nothing_and_duplicate_nothing(settings) -> None:
    _, status, broker = quiet(settings)
    specs = [job(tenant, n) for n in range(15) for tenant in ("acme", "zeta")]
    accept_jobs(broker, status, specs)
    ran: list[str] = []
    for _ in range(100):
        FairShareDispatcher(status, lambda: {}, window=3).run_once()  # a new dispatcher each time
        ran += run_queue(status, PROMPT_QUEUE, 2)
        if len(ran) == len(specs):
            break
    assert sorted(ran) == sorted(spec.id for spec in specs)  # each ran once
    assert fair_share.pending_depths(status.client, status.namespace) == {}
    assert all(status.state_of(spec.id) == "succeeded" for spec in specs)


def slot_of_newcomer(settings: Settings, backlog: int) -> int:
    """Tenant acme holds ``backlog`` jobs; zeta submits one: how many of acme's jobs run before zeta's can
    (places in the window given out before zeta's, and messages ahead of it on the queue)."""
    _, status, broker = quiet(settings)
    accept_jobs(broker, status, [job("acme", n) for n in range(backlog)])
    dispatcher = FairShareDispatcher(status, lambda: {}, window=4)
    dispatcher.run_once()
    run_queue(status, PROMPT_QUEUE, 2)  # the window stays full and busy
    dispatcher.run_once()
    newcomer = job("zeta", backlog)
    accept_jobs(broker, status, [newcomer])
    for slot in range(backlog):
        run_queue(status, PROMPT_QUEUE, 1)
        dispatcher.run_once()
        queue, redis_id = status.client.hget(status.inflight_key, newcomer.id).split("\t")
        if queue == PROMPT_QUEUE:
            return slot + status.client.lrange(f"{status.namespace}:{queue}", 0, -1).index(redis_id)
    raise AssertionError("the newcomer was never dispatched")


def test_a_newcomer_gets_a_place_within_a_slot_or_two_whatever_the_backlog_ahead(settings) -> None:
    assert slot_of_newcomer(settings, 50) <= 4  # the window (4): a new place, behind what already holds one
    assert slot_of_newcomer(settings, 500) == slot_of_newcomer(settings, 50)


def test_two_batch_tenants_progress_in_proportion_to_their_weights(settings) -> None:
    _, status, broker = quiet(settings)
    specs = [job(tenant, n, Priority.batch) for n in range(120) for tenant in ("light", "heavy")]
    accept_jobs(broker, status, specs)
    dispatcher = FairShareDispatcher(status, lambda: {"light": 1.0, "heavy": 3.0}, window=4)
    tenants, ran = tenant_of(specs), Counter[str | None]()
    dispatcher.run_once()
    for _ in range(80):
        ran.update(tenants[job_id] for job_id in run_queue(status, BATCH_QUEUE, 1))
        dispatcher.run_once()
    assert abs(ran["heavy"] / (ran["light"] + ran["heavy"]) - 0.75) <= 0.06, ran


def test_tenant_jobs_run_through_real_workers_the_newcomer_early(settings, tiny_profile, artifacts_dir: Path) -> None:
    namespaced, status, broker = quiet(settings)
    backlog = [job("acme", n) for n in range(5)]
    accept_jobs(broker, status, backlog)
    dispatcher = FairShareDispatcher(status, lambda: {}, window=1)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True)
    newcomer = job("zeta", 99)
    worker = WorkerProcess(settings_env(namespaced), artifacts_dir / "worker-fair-share.log", "--threads", "2")
    try:
        thread.start()
        wait_for(lambda: status.client.scard(fair_share.admitted_key(status.namespace, PROMPT_QUEUE)), 30,
                 "the first job dispatched")
        accept_jobs(broker, status, [newcomer])
        everyone = [*backlog, newcomer]
        wait_for(lambda: all(status.state_of(spec.id) in TERMINAL_STATES for spec in everyone), 300, "every job")
    finally:
        stop.set()
        worker.stop()
        thread.join(10)
    records = [status.get(spec.id) for spec in everyone]
    assert all(record is not None and record.state == "succeeded" for record in records)
    finished = sorted(everyone, key=lambda spec: status.get(spec.id).updated_at)  # type: ignore[union-attr]
    assert finished.index(newcomer) <= 2, [spec.tenant for spec in finished]  # not behind acme's backlog
    events = Counter(fields["job_id"] for _, fields in status.client.xrange(status.events_key)
                     if fields.get("event") == "succeeded")
    assert set(events.values()) == {1}  # each finished once


def test_a_tenant_at_its_running_jobs_quota_stays_pending_and_leaves_the_window_to_others(settings) -> None:
    _, status, broker = quiet(settings)
    TenantStore(status.client, status.namespace).put(
        Tenant(id="capped", quotas=Quotas(max_running_jobs=1)))
    quotas = TenantQuotas(status.client, status.namespace, status.active_key)
    quotas.limiter.acquire_wait_ms(running_slots("capped"), 1, "a-job-already-running", 60_000)
    accept_jobs(broker, status, [job("capped", n) for n in range(3)] + [job("free", n) for n in range(3)])
    dispatcher = FairShareDispatcher(status, lambda: {}, window=4,
                                     may_start=tenants_may_start(status.client, status.namespace, status.active_key))

    held = dispatcher.run_once()
    quotas.limiter.release(running_slots("capped"), "a-job-already-running")
    freed = dispatcher.run_once()

    assert held.moved == {(PROMPT_QUEUE, "free"): 3} and held.waiting
    assert freed.moved == {(PROMPT_QUEUE, "capped"): 1}  # the window's last place
