from __future__ import annotations

import uuid

import pytest
import redis

from queue_config.jobs import JobSpec
from storage import StoredObject
from workers.jobs.outcome import StageOutcome
from workers.jobs.record import JobStatusStore


@pytest.fixture
def store(redis_url: str) -> JobStatusStore:
    return JobStatusStore(redis.Redis.from_url(redis_url, decode_responses=True), f"test-{uuid.uuid4().hex[:8]}")


def test_a_job_record_follows_its_stages(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    store.create(spec, ("prompt_enhance", "image"))
    assert store.stage_started(spec.id, "prompt_enhance", 0) == 1
    stored = StoredObject(key="k", sha256="s", size_bytes=3, content_type="text/plain")
    store.stage_finished(spec.id, "prompt_enhance", 0.25, StageOutcome.stored("prompt", stored))

    record = store.get(spec.id)

    assert record is not None and record.state == "running" and record.stage == "prompt_enhance"
    assert record.timings_s == {"prompt_enhance": 0.25} and record.artifacts["prompt"]["key"] == "k"
    assert record.attempts == {"prompt_enhance": 1}
    assert record.spec["prompt"] == "a cat" and record.stages == ["prompt_enhance", "image"]


def test_a_finished_job_cannot_be_moved_again(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    store.create(spec, ("image",))
    assert store.transition(spec.id, "succeeded", result_url="u")
    assert not store.transition(spec.id, "running", stage="image")
    assert store.stage_started(spec.id, "image", 0) == 0
    assert not store.transition(spec.id, "failed", error="late duplicate")
    record = store.get(spec.id)
    assert record is not None and record.state == "succeeded" and record.error == ""


def test_a_job_id_is_recorded_once(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    assert store.create(spec, ("image",)) and not store.create(spec, ("image",))


def test_every_transition_is_an_event(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    store.create(spec, ("image",))
    store.stage_started(spec.id, "image", 0)
    store.transition(spec.id, "succeeded")
    events = [fields["event"] for _, fields in store.client.xrange(store.events_key) if fields["job_id"] == spec.id]
    assert events == ["queued", "running", "succeeded"]


def test_a_final_outcome_finishes_the_job_with_its_fields(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    store.create(spec, ("safety_check",))
    store.stage_started(spec.id, "safety_check", 2)
    outcome = StageOutcome(record={"safety_score": "0.9100", "error": "blocked: score"}, final_state="blocked")

    store.stage_finished(spec.id, "safety_check", 0.5, outcome)

    record = store.get(spec.id)
    assert record is not None and record.state == "blocked" and record.error == "blocked: score"
    assert record.safety_score == 0.91 and record.timings_s == {"safety_check": 0.5}


def test_a_message_for_an_unknown_job_changes_nothing(store: JobStatusStore) -> None:
    assert store.stage_started("no-such-job", "image", 1) == -1
    assert store.get("no-such-job") is None


def test_a_late_write_about_an_earlier_stage_does_not_move_the_job_back(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    store.create(spec, ("prompt_enhance", "image"))
    assert store.stage_started(spec.id, "image", 1) == 1

    assert store.stage_started(spec.id, "prompt_enhance", 0) == 0

    record = store.get(spec.id)
    assert record is not None and record.stage == "image" and record.attempts == {"image": 1}


def test_a_cancelled_job_is_listed_as_cancelled_and_cannot_be_cancelled_again(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a cat")
    store.create(spec, ("image",))

    assert store.cancel(spec.id) and not store.cancel(spec.id)

    record = store.get(spec.id)
    assert record is not None and record.state == "cancelled"
    assert store.cancelled_since(0)[0] == [spec.id]


def test_jobs_are_listed_newest_first_and_filtered(store: JobStatusStore) -> None:
    specs = [JobSpec(prompt=f"job {n}", kind="video" if n % 2 else "image") for n in range(5)]
    for spec in specs:
        store.create(spec, ("image",))
    store.transition(specs[0].id, "succeeded")

    assert [r.id for r in store.list_jobs(limit=3)] == [specs[4].id, specs[3].id, specs[2].id]
    assert [r.id for r in store.list_jobs(kind="video")] == [specs[3].id, specs[1].id]
    assert [r.id for r in store.list_jobs(state="succeeded")] == [specs[0].id]
