"""Tenant quotas at the intake and at the workers, on two worker hosts sharing one Redis.

Tenants' jobs start through the fair-share dispatcher (run here on a thread). The running-jobs quota
is watched through the provider simulator that serves the image stage: it answers each call after
``LATENCY_MS`` and notes when, so two of the tenant's jobs running at once would show as two calls in
flight together.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.remote import KeyConfig, ProviderSimulator
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.tenants import Quotas, Tenant
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.servers import wait_for
from tests.workers.remote_stages import remote_fleet, remote_toml
from tests.workers.test_job_flow import wait_until_finished
from tests.workers.test_model_concurrency import most_in_flight
from workers.doors.intake import Intake
from workers.jobs.fair_share import FairShareDispatcher
from workers.jobs.submit import submit_job
from workers.tenants import Tenants, intake_stream, receipt_prefix
from workers.tenants.quotas import usage_day_key

KEYS = ["sk-quota-a-5b1e07", "sk-quota-b-c3d9f4"]
LATENCY_MS = 300
JOBS = 4


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    """A namespace no worker serves: what the intake queues stays queued."""
    yield from cleaned_namespace(settings, "tenant-quotas")


def receipt_of(ns: Namespace, tenant_id: str, entry_id: str) -> dict[str, str]:
    return ns.status.client.hgetall(receipt_prefix(ns.settings.namespace, tenant_id) + entry_id)  # type: ignore[return-value]


def test_the_intake_answers_a_tenant_over_its_quota_with_a_rejected_quota_receipt(ns: Namespace) -> None:
    tenants = Tenants(ns.status.client, ns.settings.namespace)
    tenants.add(Tenant(id="acme", quotas=Quotas(submissions_per_minute=1)), redis_user=False)
    tenants.add(Tenant(id="strict", quotas=Quotas(daily_compute_s=10)), redis_user=False)
    ns.status.client.hset(usage_day_key(ns.settings.namespace, "strict", time.time()), "image:-:wall_s", 11)
    intake = Intake(ns.status.client, ns.broker, ns.status, ns.settings.namespace)  # type: ignore[arg-type]
    job = json.dumps({"prompt": "a heron", "width": 64, "height": 64, "enhance_prompt": False})
    entries = [(tenant, str(ns.status.client.xadd(intake_stream(ns.settings.namespace, tenant), {"job": job})))
               for tenant in ("acme", "acme", "strict")]

    assert intake.serve_once(block_ms=10) == 3

    receipts = [receipt_of(ns, tenant, entry) for tenant, entry in entries]
    assert [receipt["status"] for receipt in receipts] == ["accepted", "rejected", "rejected"]
    assert receipts[1]["reason"].startswith("quota: tenant acme is over 1 submissions per minute; retry after")
    assert receipts[2]["reason"].startswith("quota: tenant strict used 11 of its 10 worker seconds today")


def test_max_running_jobs_holds_across_two_worker_hosts_and_a_spent_budget_holds_its_jobs(
    settings: Settings, artifacts_dir: Path, tmp_path: Path
) -> None:
    keys = {key: KeyConfig(requests_per_minute=1000) for key in KEYS}
    with ProviderSimulator(keys, latency_ms=LATENCY_MS) as simulator:
        toml = remote_toml({"image": ("openai", simulator.base_url)})
        with remote_fleet(settings, tmp_path, artifacts_dir, "framequeue-quotas", toml, KEYS, hosts=2) as fleet:
            namespace, client = fleet.settings.namespace, fleet.status.client
            tenants = Tenants(client, namespace)
            tenants.add(Tenant(id="acme", quotas=Quotas(max_running_jobs=1)), redis_user=False)
            tenants.add(Tenant(id="patient", quotas=Quotas(daily_compute_s=5, over_quota="hold")), redis_user=False)
            client.hset(usage_day_key(namespace, "patient", time.time()), "image:-:wall_s", 6)
            specs = [JobSpec(prompt=f"quota lantern {n}", kind=JobKind.image, width=64, height=64,
                             enhance_prompt=False, tenant=tenant)
                     for n, tenant in enumerate(["patient"] + ["acme"] * JOBS)]
            stop = threading.Event()
            dispatcher = threading.Thread(target=FairShareDispatcher(fleet.status, lambda: {}, window=16).run_forever,
                                          args=(stop,), daemon=True)
            dispatcher.start()
            try:
                for spec in specs:
                    submit_job(fleet.broker, fleet.status, spec, catalog=fleet.catalog)
                records = [wait_until_finished(fleet.status, spec.id, timeout_s=120) for spec in specs[1:]]
                held = wait_for(lambda: (r := fleet.status.get(specs[0].id)) and r.wait_reason and r, 30,
                                "the held job's wait reason")
                still = fleet.status.get(specs[0].id)
            finally:
                stop.set()
                dispatcher.join(timeout=10)
        stats = simulator.stats()

    assert [record.state for record in records] == ["succeeded"] * JOBS
    accepted = [t for entry in stats.values() for t in entry["accepted_at"]]  # type: ignore[attr-defined]
    assert len(accepted) == JOBS  # the held job never called the provider
    assert most_in_flight(accepted, LATENCY_MS / 1000) == 1
    assert all(record.attempts["image"] == 1 for record in records)  # waiting spent no attempt
    assert any("quota: tenant acme has 1 jobs running" in record.wait_reason for record in records)
    assert "quota: tenant patient used 6 of its 5 worker seconds today" in held.wait_reason
    assert still is not None and not still.finished and not still.attempts.get("image")
