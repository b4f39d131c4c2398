"""A safety block is counted once, where it is recorded: at submission or when a stage blocks the job."""

from __future__ import annotations

import uuid

import pytest
import redis

from queue_config.jobs import JobSpec
from queue_config.safety_policy import Category, Check, SafetyFinding
from workers import ops
from workers.jobs.outcome import StageOutcome
from workers.jobs.record import JobStatusStore

FINDING = SafetyFinding(Check.frames, Category.sexual, 0.93, 0.8)


@pytest.fixture
def store(redis_url: str) -> JobStatusStore:
    return JobStatusStore(redis.Redis.from_url(redis_url, decode_responses=True), f"test-{uuid.uuid4().hex[:8]}")


def blocked_at_safety_check(store: JobStatusStore, finding: SafetyFinding = FINDING) -> str:
    spec = JobSpec(prompt="a harbour at night")
    store.create(spec, ("safety_check", "upload"))
    store.stage_started(spec.id, "safety_check", 0)
    outcome = StageOutcome(record=finding.record_fields(), final_state="blocked")
    store.stage_finished(spec.id, "safety_check", 0.1, outcome)
    return spec.id


def test_a_stage_block_is_counted_by_check_and_category_and_listed(store: JobStatusStore) -> None:
    job_id = blocked_at_safety_check(store)

    assert ops.block_counts(store) == [ops.BlockCount("frames", "sexual", 1)]
    [record] = ops.recent_blocks(store)
    assert record.id == job_id and record.state == "blocked"
    assert (record.blocked_check, record.blocked_category, record.blocked_score) == ("frames", "sexual", 0.93)


def test_a_block_recorded_at_submission_is_counted(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a harbour at night")
    finding = SafetyFinding(Check.prompt, Category.violence, 1.0, 0.5)
    fields = finding.record_fields()

    assert store.create(spec, ("prompt_enhance",), state="blocked", error=fields.pop("error"), **fields)

    assert ops.block_counts(store) == [ops.BlockCount("prompt", "violence", 1)]
    assert [record.id for record in ops.recent_blocks(store)] == [spec.id]


def test_a_duplicate_block_of_a_finished_job_is_not_counted_again(store: JobStatusStore) -> None:
    job_id = blocked_at_safety_check(store)
    late = StageOutcome(record=FINDING.record_fields(), final_state="blocked")

    store.stage_finished(job_id, "safety_check", 0.1, late)
    spec = JobSpec.model_validate(store.get(job_id).spec)  # type: ignore[union-attr]
    store.create(spec, ("safety_check",), state="blocked", **FINDING.record_fields())

    assert ops.block_counts(store) == [ops.BlockCount("frames", "sexual", 1)]


def test_blocks_without_a_check_and_other_final_states_are_not_counted(store: JobStatusStore) -> None:
    spec = JobSpec(prompt="a harbour at night")
    store.create(spec, ("image",), state="blocked", error="blocked by an operator")
    other = JobSpec(prompt="a lighthouse")
    store.create(other, ("image",))
    store.transition(other.id, "failed", error="boom", blocked_check="image", blocked_category="sexual")

    assert ops.block_counts(store) == [] and ops.recent_blocks(store) == []


def test_the_counts_add_up_and_the_newest_block_is_listed_first(store: JobStatusStore) -> None:
    first = blocked_at_safety_check(store)
    second = blocked_at_safety_check(store, SafetyFinding(Check.image, Category.sexual, 0.99, 0.8))
    third = blocked_at_safety_check(store)

    assert ops.block_counts(store) == [ops.BlockCount("frames", "sexual", 2), ops.BlockCount("image", "sexual", 1)]
    assert [record.id for record in ops.recent_blocks(store)] == [third, second, first]
    assert [record.id for record in ops.recent_blocks(store, limit=1)] == [third]
