"""Remote stages through real worker processes: shared limits, key rotation, waiting, secrets."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import redis

from pipelines.remote import KeyConfig, ProviderSimulator, key_fingerprint
from queue_config.catalog import catalog_of
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import build_broker
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job
from workers.keys import key_health

CANARY_KEY = f"sk-canary-{uuid.uuid4().hex}"
KEYS = ["sim-key-one", "sim-key-two", CANARY_KEY]
#: The model's limit, shared by every worker: one request every half second, plus one of burst.
MODEL_REQUESTS_PER_MINUTE = 120


def remote_config(path: Path, base_url: str, *, key_rpm: float, model_rpm: float | None) -> Path:
    limits = f"""
[[limits]]
provider = "sim"
model = "sim-image"
requests_per_minute = {model_rpm}
concurrency = 8
""" if model_rpm else ""
    path.write_text(f"""
[providers.sim]
kind = "openai"
base_url = "{base_url}"
keys_env = "FRAMEQUEUE_KEYS_SIM"
key_requests_per_minute = {key_rpm}
{limits}
[stages.image]
provider = "sim"
model = "sim-image"
""")
    return path


class Fleet:
    """Worker commands ("hosts") sharing one Redis, with the remote configuration."""

    def __init__(self, settings: Settings, keys: list[str], logs: Path, hosts: int, processes: int) -> None:
        self.settings = settings
        self.numbers = itertools.count()
        env = {**settings_env(settings), "FRAMEQUEUE_KEYS_SIM": ",".join(keys),
               "FRAMEQUEUE_REMOTE_CONFIG": str(settings.remote_config),
               "FRAMEQUEUE_STAGE_MAX_AGE_MS": str(settings.stage_max_age_ms)}
        self.logs = [logs / f"{settings.namespace}-host-{host}.log" for host in range(hosts)]
        self.hosts = [WorkerProcess(env, log, "--processes", str(processes), "--threads", "2") for log in self.logs]
        self.status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True),
                                     settings.namespace)
        self.broker = build_broker(settings)
        #: The workers' catalog, with the configuration's routes: it picks the queue a job starts on.
        self.catalog = catalog_of(settings)
        heartbeats = f"{settings.namespace}:__heartbeats__"
        wait_for(lambda: self.status.client.zcard(heartbeats) >= hosts * processes, 180, "every worker process")

    def submit_images(self, count: int) -> list[str]:
        """``count`` image jobs, each with a prompt of its own: a repeat would be served from the stage cache."""
        specs = [JobSpec(prompt=f"lantern {next(self.numbers)}", kind=JobKind.image, width=64, height=64,
                         enhance_prompt=False) for _ in range(count)]
        for spec in specs:
            submit_job(self.broker, self.status, spec, catalog=self.catalog)
        return [spec.id for spec in specs]

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()


@pytest.fixture(scope="module")
def simulator() -> Iterator[ProviderSimulator]:
    with ProviderSimulator({key: KeyConfig(requests_per_minute=60) for key in KEYS}, latency_ms=20) as sim:
        yield sim


@pytest.fixture(scope="module")
def fleet(settings, tiny_profile, simulator, artifacts_dir, tmp_path_factory) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    config = remote_config(tmp_path_factory.mktemp("remote") / "remote.toml", simulator.base_url,
                           key_rpm=60, model_rpm=MODEL_REQUESTS_PER_MINUTE)
    fleet_settings = settings.model_copy(update={"namespace": "framequeue-remote", "remote_config": config})
    running = Fleet(fleet_settings, KEYS, artifacts_dir, hosts=2, processes=2)
    yield running
    running.stop()


def most_in_any_window(timestamps: list[float], window_s: float) -> int:
    ordered = sorted(timestamps)
    return max((sum(1 for t in ordered if start <= t < start + window_s) for start in ordered), default=0)


def test_two_hosts_share_the_model_limit_and_no_request_sees_a_429(fleet: Fleet, simulator) -> None:
    job_ids = fleet.submit_images(24)

    records = [wait_until_finished(fleet.status, job_id) for job_id in job_ids]

    assert [record.state for record in records] == ["succeeded"] * 24
    # The route is the image stage's default model, which the provider serves under its own name.
    assert {record.models["image"] for record in records} == {f"{fleet.catalog.defaults['image']}@sim:sim-image"}
    stats = simulator.stats()
    assert sum(entry["rate_limited"] for entry in stats.values()) == 0
    accepted = [t for entry in stats.values() for t in entry["accepted_at"]]  # type: ignore[attr-defined]
    window_s = 5.0
    assert most_in_any_window(accepted, window_s) <= window_s * MODEL_REQUESTS_PER_MINUTE / 60 + 2
    assert all(record.attempts["image"] == 1 for record in records)  # waiting burned no attempt
    assert any("sim:sim-image is at 120 requests/min" in record.wait_reason for record in records)


def test_a_key_revoked_mid_run_is_disabled_and_jobs_succeed_on_the_others(fleet: Fleet, simulator) -> None:
    first = fleet.submit_images(3)
    for job_id in first:
        wait_until_finished(fleet.status, job_id)
    simulator.revoke("sim-key-one")
    rest = fleet.submit_images(6)

    records = [wait_until_finished(fleet.status, job_id) for job_id in first + rest]

    assert all(record.state == "succeeded" for record in records)
    health = {row.fingerprint: row for row in key_health(fleet.status.client, fleet.settings.namespace)}
    revoked = health[key_fingerprint("sim-key-one")]
    assert revoked.state == "disabled" and "HTTP 401" in revoked.disabled_reason
    # The other key is healthy: free, or spent for the rest of its 1 s interval by the last job.
    assert re.fullmatch(r"ok|at quota 1 s", health[key_fingerprint("sim-key-two")].state)


def test_no_key_appears_in_logs_redis_or_storage(fleet: Fleet, settings: Settings) -> None:
    fleet.stop()  # flush the logs
    written = [log.read_text(errors="replace") for log in fleet.logs]
    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        dump = {b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
                b"zset": lambda k: client.zrange(k, 0, -1, withscores=True), b"set": client.smembers,
                b"stream": client.xrange}[kind](key)
        written.append(f"{key!r} {dump!r}")
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    for item in s3.list_objects_v2(Bucket=settings.s3_bucket).get("Contents", []):
        written.append(s3.get_object(Bucket=settings.s3_bucket, Key=item["Key"])["Body"].read().decode("latin-1"))

    assert written and all(CANARY_KEY not in text for text in written)
    assert any(key_fingerprint(CANARY_KEY) in text for text in written)  # the key was used, by fingerprint


def test_jobs_wait_for_key_quota_then_finish_or_fail_past_their_age_limit(
    settings, tiny_profile, simulator, artifacts_dir, tmp_path_factory
) -> None:
    config = remote_config(tmp_path_factory.mktemp("quota") / "remote.toml", simulator.base_url,
                           key_rpm=6, model_rpm=None)
    quota_settings = settings.model_copy(
        update={"namespace": "framequeue-quota", "remote_config": config, "stage_max_age_ms": 15_000}
    )
    fleet = Fleet(quota_settings, ["sim-key-two", CANARY_KEY], artifacts_dir, hosts=1, processes=1)
    try:
        job_ids = fleet.submit_images(6)
        records = [wait_until_finished(fleet.status, job_id, timeout_s=90) for job_id in job_ids]
    finally:
        fleet.stop()

    succeeded = [r for r in records if r.state == "succeeded"]
    failed = [r for r in records if r.state == "failed"]
    assert len(succeeded) == 4 and len(failed) == 2
    assert all(r.attempts["image"] == 1 for r in succeeded)
    # A failed job may have started `image` once (a key taken by another thread between the gate's
    # look and the call puts it back), but never finished it: it waited until its age limit.
    assert all("image" not in r.timings_s and r.attempts.get("image", 0) <= 1 for r in failed)
    assert all(r.error.startswith("AgeLimit") and r.stage == "image" for r in failed)
    assert any(r.wait_reason for r in records)
