"""A stage that keeps failing spends its retries, then its job is ``failed`` with the error.

Real worker processes run two remote stages against two provider simulators: ``image``
against one that answers every request with a 503, ``prompt_enhance`` against one whose
predictions never finish (the stage polls until its time limit interrupts it).
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

from pipelines.remote import KeyConfig, ProviderSimulator
from queue_config.jobs import JobKind, JobSpec
from queue_config.stages import STAGES
from tests.workers.remote_stages import remote_fleet, remote_toml
from tests.workers.test_job_flow import wait_until_finished
from tests.workers.test_remote_fleet import Fleet
from workers.broker import build_broker
from workers.jobs.submit import submit_job

KEY = "sk-retries-5d0c2a7e91b3"
#: A time limit short enough to keep the test quick (dramatiq checks limits once a second).
TIME_LIMIT_MS = 300


@pytest.fixture(scope="module")
def failing() -> Iterator[ProviderSimulator]:
    with ProviderSimulator({KEY: KeyConfig(requests_per_minute=1000)}) as sim:
        sim.start_fault_burst(1_000_000, status=503)
        yield sim


@pytest.fixture(scope="module")
def stuck() -> Iterator[ProviderSimulator]:
    with ProviderSimulator({KEY: KeyConfig(requests_per_minute=1000)}) as sim:
        sim.set_pending_polls(1_000_000)  # without a time limit, each attempt would poll for 300 s
        yield sim


@pytest.fixture(scope="module")
def fleet(settings, failing, stuck, artifacts_dir, tmp_path_factory) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    toml = remote_toml({"image": ("openai", failing.base_url), "prompt_enhance": ("replicate", stuck.base_url)})
    with remote_fleet(settings, tmp_path_factory.mktemp("retries"), artifacts_dir, "framequeue-retries", toml,
                      [KEY]) as running:
        yield running


def retrying_events(fleet: Fleet, job_id: str) -> list[dict[str, str]]:
    entries = fleet.status.client.xrange(fleet.status.events_key)
    return [fields for _, fields in entries if fields.get("job_id") == job_id and fields["event"] == "retrying"]


class ShortTimeLimit(dramatiq.Middleware):
    """Gives every message its broker sends dramatiq's per-message ``time_limit`` of ``TIME_LIMIT_MS``.

    It stands in for the stage's own limit (minutes long); retries keep the option.
    """

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        message.options["time_limit"] = TIME_LIMIT_MS


def test_a_stage_whose_provider_always_fails_spends_its_retries_then_fails_the_job(
    fleet: Fleet, failing: ProviderSimulator
) -> None:
    budget = STAGES["image"].max_retries

    [job_id] = fleet.submit_images(1)  # no prompt enhancement: the job's first remote call is its image
    record = wait_until_finished(fleet.status, job_id, timeout_s=90)

    assert record.state == "failed" and record.stage == "image"
    assert record.error.startswith("ProviderUnavailable") and "HTTP 503" in record.error
    assert record.attempts["image"] == budget + 1
    retries = retrying_events(fleet, job_id)
    assert len(retries) == budget and all("HTTP 503" in event["error"] for event in retries)
    assert sum(entry["server_errors"] for entry in failing.stats().values()) == budget + 1


def test_a_stage_that_overruns_its_time_limit_is_retried_then_fails_the_job(fleet: Fleet) -> None:
    budget = STAGES["prompt_enhance"].max_retries
    spec = JobSpec(prompt="a slow lantern", kind=JobKind.image, width=64, height=64, enhance_prompt=True)
    broker = build_broker(fleet.settings)
    broker.add_middleware(ShortTimeLimit())

    submit_job(broker, fleet.status, spec, catalog=fleet.catalog)
    record = wait_until_finished(fleet.status, spec.id, timeout_s=120)

    assert record.state == "failed" and record.stage == "prompt_enhance"
    assert record.error.startswith("TimeLimitExceeded")
    assert record.attempts["prompt_enhance"] == budget + 1
    retries = retrying_events(fleet, spec.id)
    assert len(retries) == budget and all(event["error"].startswith("TimeLimitExceeded") for event in retries)
    assert "prompt_enhance" not in record.timings_s  # no attempt finished
