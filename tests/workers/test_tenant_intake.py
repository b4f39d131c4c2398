"""Tenants at the Redis Stream door: each writes to its own stream, its jobs are its own, held to its allowance."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from queue_config.jobs import Priority
from queue_config.settings import Settings
from queue_config.tenants import Tenant
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.servers import wait_for
from tests.workers.test_intake import REDIS_CLI
from tests.workers.test_job_flow import s3_objects, wait_until_finished
from workers.doors.intake import Intake
from workers.jobs.record import JobStatusStore
from workers.tenants import Tenants, intake_stream, receipt_prefix, redis_user

JOB: dict[str, Any] = {"prompt": "a heron at dawn", "kind": "image", "width": 64, "height": 64,
                       "enhance_prompt": False}


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    """A namespace no worker serves: what the intake queues stays queued."""
    yield from cleaned_namespace(settings, "tenant-intake")


def tenants_of(ns: Namespace) -> Tenants:
    return Tenants(ns.status.client, ns.settings.namespace)


def intake_of(ns: Namespace) -> Intake:
    return Intake(ns.status.client, ns.broker, ns.status, ns.settings.namespace)


def write(ns: Namespace, tenant_id: str | None, job: dict[str, Any]) -> str:
    return str(ns.status.client.xadd(intake_stream(ns.settings.namespace, tenant_id), {"job": json.dumps(job)}))


def receipt(ns: Namespace, tenant_id: str | None, entry_id: str) -> dict[str, str]:
    return ns.status.client.hgetall(receipt_prefix(ns.settings.namespace, tenant_id) + entry_id)  # type: ignore[return-value]


def test_each_tenants_stream_is_read_and_its_jobs_are_its_own_whatever_they_say(ns: Namespace) -> None:
    tenants_of(ns).add(Tenant(id="acme"), redis_user=False)
    tenants_of(ns).add(Tenant(id="globex"), redis_user=False)
    intake = intake_of(ns)
    from_acme = write(ns, "acme", {**JOB, "tenant": "globex"})
    from_globex = write(ns, "globex", {**JOB, "id": "globex-own-id"})
    from_operator = write(ns, None, {**JOB, "tenant": "acme"})

    assert intake.serve_once(block_ms=10) == 3

    acme_receipt = receipt(ns, "acme", from_acme)
    assert acme_receipt == {"status": "accepted", "job_id": f"intake-acme-{from_acme}", "reason": ""}
    assert receipt(ns, "globex", from_globex)["job_id"] == "globex-own-id"
    assert receipt(ns, None, from_operator) == {"status": "accepted", "job_id": f"intake-{from_operator}",
                                                "reason": ""}
    owners = {job_id: ns.status.get(job_id) for job_id in (acme_receipt["job_id"], "globex-own-id",
                                                           f"intake-{from_operator}")}
    assert {job_id: (record.tenant, record.spec.get("tenant")) for job_id, record in owners.items() if record} == {
        acme_receipt["job_id"]: ("acme", "acme"), "globex-own-id": ("globex", "globex"),
        f"intake-{from_operator}": ("operator", None)}
    queued_events = {fields["job_id"]: fields.get("tenant") for _, fields in ns.status.client.xrange(
        ns.status.events_key)}
    assert queued_events == {acme_receipt["job_id"]: "acme", "globex-own-id": "globex",
                             f"intake-{from_operator}": "operator"}


def test_a_job_asking_more_priority_than_its_tenant_may_claim_gets_a_rejected_receipt(ns: Namespace) -> None:
    tenants_of(ns).add(Tenant(id="nightly", max_priority=Priority.batch), redis_user=False)
    intake = intake_of(ns)
    too_high = write(ns, "nightly", {**JOB, "priority": "interactive"})
    allowed = write(ns, "nightly", {**JOB, "priority": "batch"})

    assert intake.serve_once(block_ms=10) == 2

    refused = receipt(ns, "nightly", too_high)
    assert refused["status"] == "rejected"
    assert "priority interactive is above what tenant nightly may claim (batch)" in refused["reason"]
    assert ns.status.get(refused["job_id"]) is None
    assert receipt(ns, "nightly", allowed)["status"] == "accepted"


def test_another_tenants_job_id_is_refused_not_taken_over(ns: Namespace) -> None:
    tenants_of(ns).add(Tenant(id="acme"), redis_user=False)
    tenants_of(ns).add(Tenant(id="globex"), redis_user=False)
    intake = intake_of(ns)
    write(ns, "acme", {**JOB, "id": "shared-id"})
    intake.serve_once(block_ms=10)
    again = write(ns, "globex", {**JOB, "id": "shared-id", "prompt": "something else"})

    intake.serve_once(block_ms=10)

    assert receipt(ns, "globex", again) == {"status": "rejected", "job_id": "shared-id",
                                            "reason": "another tenant's job has this id; choose another"}
    assert ns.status.tenant_of("shared-id") == "acme"


def test_a_disabled_tenants_stream_is_not_read_until_it_is_enabled_again(ns: Namespace) -> None:
    tenants = tenants_of(ns)
    tenants.add(Tenant(id="acme"), redis_user=False)
    intake = intake_of(ns)
    intake.serve_once(block_ms=10)
    tenants.set_enabled("acme", False)
    entry_id = write(ns, "acme", JOB)

    assert intake.serve_once(block_ms=10) == 0
    assert receipt(ns, "acme", entry_id) == {}

    tenants.set_enabled("acme", True)
    assert intake.serve_once(block_ms=10) == 1
    assert receipt(ns, "acme", entry_id)["status"] == "accepted"


@pytest.fixture
def e2e_tenant(settings: Settings) -> Iterator[tuple[str, str]]:
    """A tenant of the workers' namespace, with its Redis user: (its id, its token); removed afterwards."""
    status = JobStatusStore.from_settings(settings)
    tenants = Tenants(status.client, settings.namespace)
    tenant_id = f"e2e-{uuid.uuid4().hex[:8]}"
    token = tenants.add(Tenant(id=tenant_id))
    yield tenant_id, token
    tenants.store.client.hdel(tenants.store.tenants_key, tenant_id)
    tenants.store.client.hdel(tenants.store.tokens_key, tenants.store.hash_of(tenant_id) or "")
    tenants.store.client.srem(tenants.store.redis_users_key, tenant_id)
    status.client.acl_deluser(redis_user(settings.namespace, tenant_id))


def redis_cli_as(settings: Settings, user: str, token: str, *command: str) -> str:
    done = subprocess.run([REDIS_CLI, "-u", settings.redis_url, "--user", user, *command],
                          env={**os.environ, "REDISCLI_AUTH": token}, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


@pytest.mark.usefixtures("workers")
def test_a_job_written_by_a_tenants_redis_user_runs_and_names_its_tenant_in_record_events_and_manifest(
    settings: Settings, status: JobStatusStore, broker, e2e_tenant: tuple[str, str]  # type: ignore[no-untyped-def]
) -> None:
    tenant_id, token = e2e_tenant
    user = redis_user(settings.namespace, tenant_id)
    intake = Intake(status.client, broker, status, settings.namespace)
    entry_id = redis_cli_as(settings, user, token, "XADD", intake_stream(settings.namespace, tenant_id), "*", "job",
                            json.dumps({**JOB, "tenant": "someone-else"})).strip()
    receipt_key = receipt_prefix(settings.namespace, tenant_id) + entry_id

    def answered() -> str:
        intake.serve_once(block_ms=100)
        return redis_cli_as(settings, user, token, "HGET", receipt_key, "status").strip()

    assert wait_for(answered, 120, "the tenant's receipt") == "accepted"
    job_id = redis_cli_as(settings, user, token, "HGET", receipt_key, "job_id").strip()
    record = wait_until_finished(status, job_id)

    assert record.state == "succeeded", record.error
    assert record.tenant == tenant_id and record.spec["tenant"] == tenant_id
    manifest = json.loads(s3_objects(settings)[record.manifest_key])
    assert manifest["tenant"] == tenant_id and manifest["spec"]["tenant"] == tenant_id
    tenants_in_events = {fields.get("tenant") for _, fields in status.client.xrange(status.events_key)
                         if fields["job_id"] == job_id}
    assert tenants_in_events == {tenant_id}
    assert "NOPERM" in redis_cli_as(settings, user, token, "HGETALL", status.job_key(job_id))

