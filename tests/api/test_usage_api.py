"""``GET /v1/usage`` by token: the operator reads every tenant's usage, a tenant's token its own only."""

from __future__ import annotations

from queue_config.settings import Settings
from queue_config.tenants import Tenant
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.api.test_ops import namespace_for
from workers.jobs.usage import StageRun, UsageRecorder
from workers.tenants import Tenants


def test_a_tenant_reads_its_own_usage_and_is_refused_anothers(settings: Settings) -> None:
    ns = namespace_for(settings, "usage-api")
    pipe = ns.status.client.pipeline(transaction=False)
    for tenant in ("acme", "globex"):
        UsageRecorder(None, retention_s=60).queue(pipe, ns.settings.namespace, ns.status.job_key("x"),
                                                   StageRun(tenant, "upload", "", 0.5, 0.0, 0, 0.0, completed=True))
    pipe.execute()
    acme_token = Tenants(ns.status.client, ns.settings.namespace).add(Tenant(id="acme"), redis_user=False)

    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, \
            client_of(url) as operator, client_of(url, acme_token) as acme:
        everyone = operator.get("/v1/usage", params={"since": "today"}).json()
        own = acme.get("/v1/usage", params={"since": "today"}).json()
        named = acme.get("/v1/usage", params={"since": "today", "tenant": "acme", "format": "csv"}).text
        refused = acme.get("/v1/usage", params={"since": "today", "tenant": "globex"})

    assert {row["tenant"] for row in everyone["rows"]} == {"acme", "globex"}
    assert [row["tenant"] for row in own["rows"]] == [total["tenant"] for total in own["totals"]] == ["acme"]
    assert named.splitlines()[1:] == ["acme,upload,,1,0.500,0.000,0,0.000000"]
    assert refused.status_code == 403
