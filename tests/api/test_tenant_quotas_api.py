"""Tenant quotas at the HTTP door: a tenant over its submission rate, its queued cap or a spent daily budget
that refuses gets 429 with Retry-After; another tenant is unaffected; a budget that holds accepts.

Each test serves a namespace of its own that no worker serves, so what is submitted stays queued.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from queue_config.tenants import Quotas, Tenant
from tests.api.test_api_bounds import upload
from tests.api.test_ops import Namespace
from tests.api.test_tenants_api import Fleet, cleaned_namespace, submit
from workers.tenants.quotas import usage_day_key


@pytest.fixture
def ns(settings) -> Iterator[Namespace]:  # type: ignore[no-untyped-def]
    yield from cleaned_namespace(settings, "api-tenant-quotas")


@pytest.fixture
def fleet(ns: Namespace) -> Iterator[Fleet]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield Fleet(ns, stack)


def spend(ns: Namespace, tenant_id: str, wall_s: float = 0.0, cost: float = 0.0) -> None:
    """What usage accounting would have written for the tenant today."""
    ns.status.client.hset(usage_day_key(ns.settings.namespace, tenant_id, time.time()),
                          mapping={"image:sim-model:wall_s": wall_s, "image:sim-model:cost": cost})


def test_a_tenant_over_its_submissions_per_minute_gets_429_with_retry_after_and_another_tenant_does_not(
    fleet: Fleet,
) -> None:
    acme, _ = fleet.add(Tenant(id="acme", quotas=Quotas(submissions_per_minute=1)))
    globex, _ = fleet.add(Tenant(id="globex", quotas=Quotas(submissions_per_minute=1)))

    assert submit(acme).status_code == 202
    over = submit(acme)
    assert over.status_code == 429
    assert over.json()["detail"].startswith("quota: tenant acme is over 1 submissions per minute")
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert submit(globex).status_code == 202
    assert upload(acme, "a heron").status_code == 429  # a batch file is a submission too


def test_a_tenant_at_its_queued_jobs_quota_is_refused_whole_until_jobs_finish(fleet: Fleet) -> None:
    acme, _ = fleet.add(Tenant(id="acme", quotas=Quotas(max_queued_jobs=2)))
    first = submit(acme).json()["job_id"]
    assert submit(acme).status_code == 202

    refused = submit(acme)
    assert refused.status_code == 429 and refused.json()["detail"].startswith("quota: tenant acme has 2 unfinished")
    assert int(refused.headers["Retry-After"]) >= 1
    assert upload(acme, "one", "two").status_code == 429  # refused whole
    assert fleet.operator.post(f"/v1/jobs/{first}/cancel").status_code == 200
    assert submit(acme).status_code == 202


def test_a_spent_daily_budget_refuses_until_the_next_utc_day_or_holds(fleet: Fleet) -> None:
    strict, _ = fleet.add(Tenant(id="strict", quotas=Quotas(daily_compute_s=50)))
    patient, _ = fleet.add(Tenant(id="patient", quotas=Quotas(daily_cost=1.0, over_quota="hold")))
    assert submit(strict).status_code == 202  # nothing spent yet
    spend(fleet.ns, "strict", wall_s=50)
    spend(fleet.ns, "patient", cost=1.5)

    refused = submit(strict)
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("quota: tenant strict used 50 of its 50 worker seconds today")
    to_midnight = 86_400 - time.time() % 86_400
    assert abs(int(refused.headers["Retry-After"]) - to_midnight) <= 5
    assert submit(patient).status_code == 202  # accepted; its first stage waits (tests/workers/test_tenant_quotas.py)
