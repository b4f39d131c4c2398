"""Usage through a real worker: per job and stage in the record, per tenant and day in Redis, and what
``framequeue usage``, ``GET /v1/usage`` and ``/metrics`` make of it; cost by a catalog with costs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from pipelines.remote import KeyConfig, OpenAICompatibleClient, ProviderSimulator, key_fingerprint
from queue_config.catalog import Catalog, catalog_of
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.api.test_jobs_api import api_server
from tests.conftest import settings_env
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.fair_share import FairShareDispatcher
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job
from workers.ops.usage import usage_report

TOKEN = "usage-token"
#: The key the pool tries first (round robin from the first key), with room for one request a minute.
BUSY_KEY = "sk-usage-busy-5e1d0c9b8a7f6e5d"
SPARE_KEY = "sk-usage-spare-0a1b2c3d4e5f6a7b"
SIDE_PX, FRAMES = 64, 4
#: The tiny profile's models with costs, and a remote image model at the simulator.
CATALOG = """
[defaults]
prompt_enhance = "tiny-text"
image = "tiny-sd"
frames = "camera"

[models.tiny-text]
stage = "prompt_enhance"
backend = { kind = "local", pipeline = "AutoModelForCausalLM", model = "tiny:text" }
memory_mb = 1
cost = { per_call = 0.001, per_second = 0.01 }

[models.tiny-sd]
stage = "image"
backend = { kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }
params = { guidance = 0.0 }
memory_mb = 2
cost = { per_call = 0.01, per_second = 0.5, per_megapixel = 1.0 }

[models.camera]
stage = "frames"
backend = { kind = "local", pipeline = "camera" }
capabilities = { input_image = true }
cost = { per_megapixel = 0.1 }

[models.sim-image]
stage = "image"
backend = { kind = "remote", provider = "sim", model = "sim-image" }
cost = { per_call = 0.25, per_megapixel = 2.0 }
"""


@dataclass
class UsageFleet:
    settings: Settings
    env: dict[str, str]
    broker: FramequeueBroker
    status: JobStatusStore
    catalog: Catalog
    simulator: ProviderSimulator

    def run(self, spec: JobSpec) -> JobRecord:
        submit_job(self.broker, self.status, spec, catalog=self.catalog)
        return wait_until_finished(self.status, spec.id)


@pytest.fixture(scope="module")
def fleet(settings: Settings, tiny_profile, artifacts_dir: Path, tmp_path_factory) -> Iterator[UsageFleet]:  # type: ignore[no-untyped-def]
    """One worker (one process, two threads) with the costed catalog, in a namespace of its own, and the
    fair-share dispatcher that moves tenants' jobs onto the queues."""
    keys = {BUSY_KEY: KeyConfig(requests_per_minute=1), SPARE_KEY: KeyConfig(requests_per_minute=60)}
    with ProviderSimulator(keys) as simulator:
        config_dir = tmp_path_factory.mktemp("usage")
        (config_dir / "catalog.toml").write_text(CATALOG)
        (config_dir / "remote.toml").write_text(f'[providers.sim]\nkind = "openai"\nbase_url = "{simulator.base_url}"\n'
                                                'keys_env = "FRAMEQUEUE_KEYS_SIM"\n')
        fleet_settings = settings.model_copy(update={
            "namespace": f"framequeue-usage-{uuid.uuid4().hex[:8]}", "model_catalog": config_dir / "catalog.toml",
            "remote_config": config_dir / "remote.toml", "api_token": TOKEN})
        env = {**settings_env(fleet_settings), "FRAMEQUEUE_MODEL_CATALOG": str(fleet_settings.model_catalog),
               "FRAMEQUEUE_REMOTE_CONFIG": str(fleet_settings.remote_config),
               "FRAMEQUEUE_KEYS_SIM": f"{BUSY_KEY},{SPARE_KEY}"}
        worker = WorkerProcess(env, artifacts_dir / "usage-worker.log", "--processes", "1", "--threads", "2")
        status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True),
                                fleet_settings.namespace)
        stop = threading.Event()
        dispatcher = threading.Thread(target=FairShareDispatcher(status, lambda: {}).run_forever, args=(stop,),
                                      daemon=True)
        dispatcher.start()
        try:
            wait_for(lambda: status.client.zcard(f"{fleet_settings.namespace}:__heartbeats__"), 180, "the worker")
            yield UsageFleet(fleet_settings, env, build_broker(fleet_settings), status, catalog_of(fleet_settings),
                             simulator)
        finally:
            stop.set()
            worker.stop()
            dispatcher.join(10)


@pytest.fixture(scope="module")
def two_tenants(fleet: UsageFleet) -> dict[str, JobRecord]:
    """An image job of tenant acme (its prompt enhanced) and a video job of tenant globex (not enhanced)."""
    acme = fleet.run(JobSpec(prompt=f"a harbour at dawn {uuid.uuid4().hex}", kind=JobKind.image, tenant="acme",
                             width=SIDE_PX, height=SIDE_PX, cache=False))
    globex = fleet.run(JobSpec(prompt=f"a kite over dunes {uuid.uuid4().hex}", kind=JobKind.video, tenant="globex",
                               enhance_prompt=False, num_frames=FRAMES, fps=4, width=SIDE_PX, height=SIDE_PX,
                               cache=False))
    return {"acme": acme, "globex": globex}


def test_each_stage_of_a_job_records_its_usage_and_cost_by_the_catalog(two_tenants: dict[str, JobRecord]) -> None:
    acme, globex = two_tenants["acme"], two_tenants["globex"]

    for record in (acme, globex):
        assert record.state == "succeeded", record.error
        assert set(record.attempts.values()) == {1}  # one run each: usage's wall time is the stage's timing
        assert set(record.usage) == set(record.stages)
        for stage in record.stages:
            used = record.usage[stage]
            assert used["wall_s"] == pytest.approx(record.timings_s[stage], abs=2e-4)
            assert "device_s" not in used and "calls" not in used  # a CPU worker, local models
    image_s, text_s = acme.usage["image"]["wall_s"], acme.usage["prompt_enhance"]["wall_s"]
    megapixels = SIDE_PX * SIDE_PX / 1e6
    # Local on the CPU: per_call once, per_second on the run's wall seconds, per_megapixel on what it made.
    assert acme.usage["image"]["cost"] == pytest.approx(0.01 + 0.5 * image_s + 1.0 * megapixels, abs=1e-6)
    assert acme.usage["prompt_enhance"]["cost"] == pytest.approx(0.001 + 0.01 * text_s, abs=1e-6)
    assert "cost" not in globex.usage["prompt_enhance"]  # not enhanced: the text model never ran
    assert globex.usage["frames"]["cost"] == pytest.approx(0.1 * megapixels * FRAMES, abs=1e-9)
    assert all("cost" not in globex.usage[stage] for stage in ("video", "safety_check", "upload"))
    assert acme.usage_total["cost"] == pytest.approx(acme.usage["image"]["cost"] + acme.usage["prompt_enhance"]["cost"])
    assert acme.usage_total["wall_s"] == pytest.approx(sum(used["wall_s"] for used in acme.usage.values()))


def test_the_tenants_days_sum_their_jobs_usage(fleet: UsageFleet, two_tenants: dict[str, JobRecord]) -> None:
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # a job finished just before midnight is counted

    for tenant, record in two_tenants.items():
        rows = {row.stage: row for row in usage_report(fleet.status.client, fleet.settings.namespace, since,
                                                       tenant=tenant).rows}
        assert set(rows) == set(record.stages)
        for stage, row in rows.items():
            used = record.usage[stage]
            assert (row.jobs, row.calls) == (1, 0)
            assert row.wall_s == pytest.approx(used["wall_s"], abs=1e-9)
            assert row.cost == pytest.approx(used.get("cost", 0.0), abs=1e-9)
            assert row.model == {"prompt_enhance": "tiny-text", "image": "tiny-sd", "frames": "camera"}.get(stage, "")


def test_the_cli_and_the_api_export_the_same_csv_and_metrics_count_by_tenant(
    fleet: UsageFleet, two_tenants: dict[str, JobRecord]
) -> None:
    cli = subprocess.run([sys.executable, "-m", "workers.cli", "usage", "--since", "2d", "--csv"], env=fleet.env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    with api_server(fleet.settings) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                                         timeout=30) as client:
        api = client.get("/v1/usage", params={"since": "2d", "format": "csv"})
        only_acme = client.get("/v1/usage", params={"since": "2d", "tenant": "acme"})
        metrics = client.get("/metrics")
        refused = client.get("/v1/usage", params={"since": "yesterday"})

    assert api.status_code == 200 and api.headers["content-type"].startswith("text/csv")
    assert api.text == cli.stdout
    rows = list(csv.DictReader(io.StringIO(api.text)))
    for tenant, record in two_tenants.items():
        mine = {row["stage"]: row for row in rows if row["tenant"] == tenant}
        assert {stage: int(row["jobs"]) for stage, row in mine.items()} == dict.fromkeys(record.stages, 1)
        assert float(mine["image"]["cost"]) == pytest.approx(record.usage["image"]["cost"], abs=1e-6)
    assert {row["tenant"] for row in only_acme.json()["rows"]} == {"acme"}
    assert refused.status_code == 422
    samples = {(sample.name, frozenset(sample.labels.items())): sample.value
               for family in text_string_to_metric_families(metrics.text) for sample in family.samples}
    for tenant, record in two_tenants.items():
        labels = frozenset({"tenant": tenant, "stage": "image", "model": "tiny-sd"}.items())
        image = record.usage["image"]
        assert samples[("framequeue_usage_jobs_total", labels)] == 1
        assert samples[("framequeue_usage_cost_total", labels)] == pytest.approx(image["cost"])
        assert samples[("framequeue_usage_wall_seconds_total", labels)] == pytest.approx(image["wall_s"])


def test_a_remote_stage_counts_each_provider_call_a_429_failover_included(fleet: UsageFleet) -> None:
    # Spend the first key's one request a minute: the pool picks it first, gets a 429 and fails over.
    OpenAICompatibleClient(fleet.simulator.base_url).generate_image(
        key=BUSY_KEY, model="sim-image", prompt="warm-up", width=SIDE_PX, height=SIDE_PX, seed=0, steps=1,
        negative_prompt=None)

    record = fleet.run(JobSpec(prompt=f"a lighthouse {uuid.uuid4().hex}", kind=JobKind.image, tenant="acme",
                               models={"image": "sim-image"}, enhance_prompt=False, width=SIDE_PX, height=SIDE_PX,
                               cache=False))

    assert record.state == "succeeded", record.error
    stats = fleet.simulator.stats()
    assert stats[key_fingerprint(BUSY_KEY)]["rate_limited"] == 1
    assert stats[key_fingerprint(SPARE_KEY)]["accepted"] == 1
    assert record.usage["image"]["calls"] == 2
    assert record.usage_total["calls"] == 2  # no other stage called a provider
    # per_call for each call, per_megapixel for the one image it made (no per_second).
    assert record.usage["image"]["cost"] == pytest.approx(2 * 0.25 + 2.0 * SIDE_PX * SIDE_PX / 1e6, abs=1e-9)
    today = dt.datetime.now(dt.UTC).date()
    remote = [row for row in usage_report(fleet.status.client, fleet.settings.namespace, today - dt.timedelta(days=1),
                                          tenant="acme").rows if row.model == "sim-image"]
    assert [(row.jobs, row.calls) for row in remote] == [(1, 2)]
