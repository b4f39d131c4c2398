"""The dashboard's tenant filter on the job list, and its usage page with the CSV link (no worker: the
usage is queued as the job-status middleware queues it)."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.api.test_dashboard import TOKEN, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, namespace_for
from workers.jobs.usage import StageRun, UsageRecorder
from workers.ops.job_search import JobQuery, search_jobs
from workers.ops.usage import usage_report


def jobs_of(ns: Namespace, tenant: str | None, count: int) -> list[str]:
    specs = [JobSpec(prompt=f"a crane {i}", kind=JobKind.image, width=64, height=64, tenant=tenant)
             for i in range(count)]
    ns.status.accept_many(specs, lambda spec: stage_plan(spec.kind), lambda _: None)
    return [spec.id for spec in specs]


def test_the_job_list_finds_a_tenants_jobs_and_the_operators_own(settings: Settings) -> None:
    ns = namespace_for(settings, "tenant-filter")
    acme, globex, operator = jobs_of(ns, "acme", 3), jobs_of(ns, "globex", 2), jobs_of(ns, None, 2)

    found = {tenant: {job.id for job in search_jobs(ns.status, JobQuery(tenant=tenant)).jobs}
             for tenant in ("acme", "globex", "operator", "nobody")}
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        page = client.get("/dashboard/jobs", params={"tenant": "acme", "limit": 20}).text
        paged = client.get("/dashboard/jobs", params={"tenant": "acme", "limit": 20, "q": "crane"}).text

    assert found == {"acme": set(acme), "globex": set(globex), "operator": set(operator), "nobody": set()}
    assert set(re.findall(r'/dashboard/jobs/([0-9a-f]{32})"', page)) == set(acme)
    assert "tenant acme" in page and 'name="tenant" value="acme"' in page
    assert set(re.findall(r'/dashboard/jobs/([0-9a-f]{32})"', paged)) == set(acme)


def test_the_usage_page_shows_each_tenants_rows_and_total_and_links_the_csv(settings: Settings) -> None:
    ns = namespace_for(settings, "usage-page")
    recorder = UsageRecorder(None, retention_s=3600)
    pipe = ns.status.client.pipeline(transaction=False)
    for run in (StageRun("acme", "image", "tiny-sd", 1.5, 0.0, 0, 0.75, completed=True),
                StageRun("acme", "upload", "", 0.25, 0.0, 0, 0.0, completed=True),
                StageRun("operator", "image", "sim-image", 0.5, 0.0, 3, 0.6, completed=False)):
        recorder.queue(pipe, ns.settings.namespace, ns.status.job_key("gone"), run)
    pipe.execute()

    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        page = client.get("/dashboard/usage", params={"since": "today"}).text
        link = re.search(r'<a id="usage-csv" href="([^"]+)"', page)
        assert link
        exported = client.get(unescape(link.group(1)))
        bad = client.get("/dashboard/usage", params={"since": "last tuesday"})

    today = dt.datetime.now(dt.UTC).date()
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text == usage_report(ns.status.client, ns.settings.namespace, today).csv()
    assert 'data-tenant="acme" data-stage="image" data-model="tiny-sd"' in page
    assert re.search(r'data-tenant="acme" data-stage="total">.*?<th class="num">1\.75</th>', page, re.S)
    # A run that did not complete the stage adds its seconds, calls and cost, and no job.
    operator = re.search(r'data-tenant="operator" data-stage="image".*?</tr>', page, re.S)
    assert operator and re.findall(r'<td class="num">([^<]*)</td>', operator.group(0)) == [
        "0", "0.50", "0.00", "3", "0.6000"]
    assert bad.status_code == 400
    assert not ns.status.client.exists(ns.status.job_key("gone"))  # no record, no stray hash of usage fields
