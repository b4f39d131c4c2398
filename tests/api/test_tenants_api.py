"""Tenants over HTTP: each token opens its tenant's jobs and batches only, held to its priority allowance.

Each test serves a namespace of its own that no worker serves, so what is submitted stays queued.
Tenants here have no Redis user (``tests/workers/test_tenant_redis_users.py`` tries those).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from queue_config.jobs import Priority
from queue_config.settings import Settings
from queue_config.tenants import Tenant
from tests.api.test_jobs_api import SMALL_IMAGE, TOKEN, api_server, client_of, follow
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.servers import wait_for
from workers.tenants import TOKEN_CACHE_S, Tenants

#: Unfinished jobs a caller may have in the bounds test.
CAP = 2


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "api-tenants")


class Fleet:
    """An API on the namespace, with the operator's client and a client per tenant."""

    def __init__(self, ns: Namespace, stack: ExitStack, **settings: Any) -> None:
        self.ns, self.tenants = ns, Tenants(ns.status.client, ns.settings.namespace)
        self.url = stack.enter_context(api_server(ns.settings.model_copy(update={"api_token": TOKEN, **settings})))
        self.operator = stack.enter_context(client_of(self.url))
        self.stack = stack

    def add(self, tenant: Tenant) -> tuple[httpx.Client, str]:
        token = self.tenants.add(tenant, redis_user=False)
        return self.client(token), token

    def client(self, token: str) -> httpx.Client:
        return self.stack.enter_context(client_of(self.url, token))


@pytest.fixture
def fleet(ns: Namespace) -> Iterator[Fleet]:
    with ExitStack() as stack:
        yield Fleet(ns, stack)


def submit(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.post("/v1/jobs", json={**SMALL_IMAGE, **changes})


def test_a_tenant_sees_and_cancels_only_its_own_jobs_and_the_operator_sees_all(fleet: Fleet) -> None:
    acme, _ = fleet.add(Tenant(id="acme"))
    globex, _ = fleet.add(Tenant(id="globex"))
    acme_job = submit(acme, tenant="globex").json()["job_id"]
    globex_job = submit(globex).json()["job_id"]
    operator_job = submit(fleet.operator, tenant="acme").json()["job_id"]

    for path in (f"/v1/jobs/{acme_job}", f"/v1/jobs/{acme_job}/preview", f"/v1/jobs/{acme_job}/events"):
        assert globex.get(path).json() == {"detail": "no such job"}, path
    assert globex.post(f"/v1/jobs/{acme_job}/cancel").status_code == 404
    assert globex.post("/v1/jobs/no-such-job/cancel").status_code == 404
    assert fleet.ns.status.state_of(acme_job) == "queued"

    def listed(client: httpx.Client) -> set[str]:
        return {job["id"] for job in client.get("/v1/jobs").json()["jobs"]}

    assert listed(acme) == {acme_job} and listed(globex) == {globex_job}
    assert listed(fleet.operator) == {acme_job, globex_job, operator_job}
    record = acme.get(f"/v1/jobs/{acme_job}").json()
    assert (record["tenant"], record["spec"]["tenant"]) == ("acme", "acme")  # not the "globex" it said
    assert fleet.operator.get(f"/v1/jobs/{operator_job}").json()["tenant"] == "operator"
    assert fleet.operator.get(f"/v1/jobs/{globex_job}").status_code == 200
    assert acme.post(f"/v1/jobs/{acme_job}/cancel").json() == {"cancelled": True}
    events = follow(acme, acme_job)
    assert [(event["event"], event["data"]["tenant"]) for event in events] == [("queued", "acme"),
                                                                               ("cancelled", "acme")]


def test_a_job_asking_more_priority_than_its_tenant_may_claim_is_refused_with_the_reason(fleet: Fleet) -> None:
    nightly, _ = fleet.add(Tenant(id="nightly", max_priority=Priority.batch))

    refused = submit(nightly, id="too-high")  # interactive, the default
    allowed = submit(nightly, id="allowed", priority="batch")

    assert refused.status_code == 422
    assert refused.json() == {"detail": "priority interactive is above what tenant nightly may claim (batch); "
                                        "ask for batch"}
    assert fleet.ns.status.get("too-high") is None
    assert allowed.status_code == 202, allowed.text
    assert submit(fleet.operator, id="operator-interactive").status_code == 202


def test_another_tenants_job_id_is_refused_with_409_and_nothing_of_its_job(fleet: Fleet) -> None:
    acme, _ = fleet.add(Tenant(id="acme"))
    globex, _ = fleet.add(Tenant(id="globex"))
    assert submit(acme, id="shared").status_code == 202

    taken = submit(globex, id="shared", prompt="another prompt")

    assert taken.status_code == 409 and taken.json() == {"detail": "another tenant's job has this id; choose another"}
    assert submit(acme, id="shared").json()["created"] is False  # its own id again: idempotent as before
    assert fleet.ns.status.tenant_of("shared") == "acme"


def test_a_disabled_or_rotated_token_stops_opening_the_api_within_the_cache_time(fleet: Fleet) -> None:
    acme, token = fleet.add(Tenant(id="acme"))
    assert acme.get("/v1/jobs").status_code == 200  # looked up and cached

    def refused_within(client: httpx.Client) -> float:
        started = time.monotonic()
        wait_for(lambda: client.get("/v1/jobs").status_code == 401, TOKEN_CACHE_S + 5, "the token to be refused",
                 interval_s=0.05)
        return time.monotonic() - started

    fleet.tenants.set_enabled("acme", False)
    after_disable_s = refused_within(acme)
    fleet.tenants.set_enabled("acme", True)
    wait_for(lambda: acme.get("/v1/jobs").status_code == 200, 5, "the enabled token to open the API again")
    new = fleet.client(fleet.tenants.rotate_token("acme"))
    after_rotate_s = refused_within(acme)

    assert after_disable_s <= TOKEN_CACHE_S + 0.5 and after_rotate_s <= TOKEN_CACHE_S + 0.5
    assert new.get("/v1/jobs").status_code == 200
    assert fleet.client(token).get("/v1/jobs").status_code == 401
    assert fleet.operator.get("/v1/jobs").status_code == 200
    for operators_only in ("/metrics", "/dashboard", "/openapi.json"):
        assert new.get(operators_only).status_code == 401, operators_only


def test_a_tenants_cap_on_unfinished_jobs_is_its_own_whatever_token_it_uses(ns: Namespace) -> None:
    with ExitStack() as stack:
        fleet = Fleet(ns, stack, api_max_queued_jobs=CAP)
        acme, _ = fleet.add(Tenant(id="acme"))
        globex, _ = fleet.add(Tenant(id="globex"))
        assert [submit(acme, id=f"acme-{n}").status_code for n in range(CAP)] == [202] * CAP
        rotated = fleet.client(fleet.tenants.rotate_token("acme"))

        over = submit(rotated, id="acme-over")
        other = submit(globex, id="globex-0")
        operator = submit(fleet.operator, id="operator-0")

    assert over.status_code == 429 and "too many unfinished jobs" in over.text
    assert other.status_code == 202 and operator.status_code == 202


def upload(client: httpx.Client, data: bytes, name: str = "") -> httpx.Response:
    return client.post("/v1/batches", files={"file": ("night.jsonl", data, "application/octet-stream")},
                       data={"name": name} if name else None)


def test_a_tenants_batches_are_its_own(fleet: Fleet) -> None:
    acme, _ = fleet.add(Tenant(id="acme", max_priority=Priority.batch))
    globex, _ = fleet.add(Tenant(id="globex"))
    lines = "".join(json.dumps({"prompt": prompt, "width": 64, "height": 64, "tenant": "globex"}) + "\n"
                    for prompt in ("a fox", "a hare")).encode()

    acme_batch = upload(acme, lines)
    globex_batch = upload(globex, lines)
    named = upload(acme, lines, name="nightly")
    taken = upload(globex, lines, name="nightly")

    assert acme_batch.status_code == globex_batch.status_code == named.status_code == 202, acme_batch.text
    batch_id = acme_batch.json()["batch_id"]
    assert globex_batch.json()["batch_id"] != batch_id  # the same file: a batch of each tenant's
    assert taken.status_code == 409
    assert taken.json() == {"detail": "another tenant's batch has this name; choose another"}
    assert globex.get(f"/v1/batches/{batch_id}").status_code == 404
    assert globex.post(f"/v1/batches/{batch_id}/cancel").status_code == 404
    assert globex.post(f"/v1/batches/{batch_id}/retry-failed").status_code == 404
    assert acme.get(f"/v1/batches/{batch_id}").json()["total"] == 2
    assert fleet.operator.get(f"/v1/batches/{batch_id}").status_code == 200
    jobs = acme.get("/v1/jobs").json()["jobs"]
    assert len(jobs) == 4 and {job["tenant"] for job in jobs} == {"acme"}
    assert acme.post(f"/v1/batches/{batch_id}/cancel").json() == {"cancelled": 2}
