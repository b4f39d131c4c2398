"""A tenant's jobs have an index of their own: listing them reads no other tenant's job, retention
trims it as it trims the job index, and jobs accepted before it existed are listed after the
reconciler's first pass."""

from __future__ import annotations

import uuid
from pathlib import Path

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.servers import wait_for
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import accept_jobs
from workers.jobs.tenant_index import backfilled_key
from workers.ops.job_search import JobQuery, search_jobs

#: Short enough to wait out in a test (see test_retention.py).
RETENTION_S = 3.0
#: Jobs of others around the tenant's few: a listing that scanned would read every one.
OTHERS = 300


def store(redis_url: str, data_dir: Path, retention_s: float = 3600) -> tuple[JobStatusStore, FramequeueBroker]:
    settings = Settings(redis_url=redis_url, namespace=f"tenant-index-{uuid.uuid4().hex[:8]}", data_dir=data_dir,
                        retention_s=retention_s)
    return JobStatusStore.from_settings(settings), build_broker(settings)


def job(tenant: str | None, n: int = 0) -> JobSpec:
    return JobSpec(prompt=f"a lantern {n}", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                   tenant=tenant)


def counting_reads(status: JobStatusStore) -> list[str]:
    """The ids of the records ``status.get`` reads from now on."""
    reads: list[str] = []
    read = status.get

    def get(job_id: str) -> JobRecord | None:
        reads.append(job_id)
        return read(job_id)

    status.get = get  # type: ignore[method-assign]
    return reads


def test_listing_a_tenants_jobs_reads_none_of_anyone_elses(redis_url: str, tmp_path: Path) -> None:
    status, broker = store(redis_url, tmp_path)
    mine = [job("acme", n) for n in range(3)]
    accept_jobs(broker, status, mine[:1] + [job("globex", n) for n in range(OTHERS)] + mine[1:] + [job(None)])
    reads = counting_reads(status)

    listed = status.list_jobs(tenant="acme", limit=50)
    page = search_jobs(status, JobQuery(tenant="acme"))

    assert {record.id for record in listed} == {spec.id for spec in mine}
    assert sorted(reads) == sorted([spec.id for spec in mine] * 2)  # the listing's reads, then the search's
    assert {record.id for record in page.jobs} == {spec.id for spec in mine} and page.scanned == 3
    assert len(status.list_jobs(tenant="operator")) == 1  # the operator's are listed by the job index alone
    assert status.client.smembers(status.tenants_key) == {"acme", "globex"}


def test_retention_trims_a_tenants_index_and_forgets_a_tenant_left_without_jobs(
    redis_url: str, tmp_path: Path
) -> None:
    status, broker = store(redis_url, tmp_path, retention_s=RETENTION_S)
    finished, unfinished = job("acme", 1), job("initech", 2)
    accept_jobs(broker, status, [finished, unfinished])
    assert status.transition(finished.id, "succeeded", stage="upload")

    wait_for(lambda: not status.client.exists(status.job_key(finished.id)), RETENTION_S + 10,
             "the finished job's record to expire")
    Reconciler(status, broker).run_once()

    assert status.client.exists(status.tenant_index_key("acme")) == 0
    assert status.client.smembers(status.tenants_key) == {"initech"}
    assert [record.id for record in status.list_jobs(tenant="initech")] == [unfinished.id]


def test_jobs_accepted_before_tenant_indexes_are_listed_after_the_first_reconciler_pass(
    redis_url: str, tmp_path: Path
) -> None:
    status, broker = store(redis_url, tmp_path)
    acme, operators, expired = [job("acme", 1), job("acme", 2)], job(None, 3), job("acme", 4)
    accept_jobs(broker, status, [*acme, operators, expired])
    # As jobs accepted before there were tenant indexes lie: in the job index only. One's record has gone.
    tenant_keys = [status.tenant_index_key(tenant) for tenant in status.client.smembers(status.tenants_key)]
    status.client.delete(*tenant_keys, status.tenants_key, status.job_key(expired.id))
    status.client.hdel(status.job_key(operators.id), "tenant")  # a record of before tenants: the operator's
    assert status.list_jobs(tenant="acme") == []

    Reconciler(status, broker, stale_after_s=3600).run_once()

    assert sorted(record.id for record in status.list_jobs(tenant="acme")) == sorted(spec.id for spec in acme)
    assert [record.id for record in status.list_jobs(tenant="operator")] == [operators.id]
    assert status.client.get(backfilled_key(status)) == "4"  # every index entry looked at, once
    assert status.client.smembers(status.tenants_key) == {"acme"}
    status.client.delete(status.tenant_index_key("acme"))
    Reconciler(status, broker, stale_after_s=3600).run_once()
    assert status.list_jobs(tenant="acme") == []  # done once: a later pass does not scan the index again
