"""A model's concurrency limit holds across every worker thread and host, end to end.

Two worker commands (two threads each) run a remote ``image`` stage whose model allows one
call at a time. The simulator answers each request after ``LATENCY_MS`` and notes when it
accepted it, so two calls that overlapped would show as two acceptances closer than that.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.remote import KeyConfig, ProviderSimulator
from queue_config.settings import Settings
from tests.workers.remote_stages import MODEL, provider_of, remote_fleet, remote_toml
from tests.workers.test_job_flow import wait_until_finished

KEYS = ["sk-concurrency-a-61d2f0", "sk-concurrency-b-9e4c7a"]
LATENCY_MS = 300
JOBS = 6


def most_in_flight(accepted_at_s: list[float], latency_s: float) -> int:
    """The most requests in flight at once, each from ``latency_s`` before its acceptance until it.

    The simulator waits the latency before it accepts a request, so each one was open then.
    A little slack allows for clock reads on either side of the simulator's sleep.
    """
    spans = [(t - latency_s + 0.02, t) for t in accepted_at_s]
    return max((sum(1 for start, end in spans if start <= t <= end) for t in accepted_at_s), default=0)


def test_a_model_with_concurrency_one_serves_one_call_at_a_time_and_every_job_succeeds(
    settings: Settings, artifacts_dir: Path, tmp_path: Path
) -> None:
    keys = {key: KeyConfig(requests_per_minute=1000) for key in KEYS}
    with ProviderSimulator(keys, latency_ms=LATENCY_MS) as simulator:
        toml = remote_toml({"image": ("openai", simulator.base_url)}, concurrency=1)
        with remote_fleet(settings, tmp_path, artifacts_dir, "framequeue-concurrency", toml, KEYS, hosts=2) as fleet:
            job_ids = fleet.submit_images(JOBS)
            records = [wait_until_finished(fleet.status, job_id, timeout_s=120) for job_id in job_ids]
        stats = simulator.stats()

    assert [record.state for record in records] == ["succeeded"] * JOBS
    accepted = [t for entry in stats.values() for t in entry["accepted_at"]]  # type: ignore[attr-defined]
    assert len(accepted) == JOBS
    assert most_in_flight(accepted, LATENCY_MS / 1000) == 1
    assert all(record.attempts["image"] == 1 for record in records)  # waiting for the slot spent no attempt
    assert any(f"{provider_of('image')}:{MODEL} has 1 calls in flight" in record.wait_reason for record in records)
