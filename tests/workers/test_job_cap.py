"""The cap on an owner's unfinished jobs (``workers/limits/job_cap.py``) on a real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from workers.errors import OverCap
from workers.limits import JobCap


@pytest.fixture
def cap(redis_url: str) -> JobCap:
    namespace = f"job-cap-test-{uuid.uuid4().hex[:8]}"
    return JobCap(redis.Redis.from_url(redis_url, decode_responses=True), f"{namespace}:active", namespace)


def accepted(cap: JobCap, *job_ids: str) -> None:
    """The jobs are accepted and unfinished, as accept.lua records them."""
    cap.client.zadd(cap.unfinished_key, dict.fromkeys(job_ids, 1.0))


def test_ids_being_accepted_count_until_settled_and_then_only_while_their_jobs_are_unfinished(cap: JobCap) -> None:
    assert cap.take("owner", ["a", "b"], cap=2) == 2
    with pytest.raises(OverCap, match="2 unfinished jobs and 1 more would be over the cap of 2"):
        cap.take("owner", ["c"], cap=2)  # a and b are held, though not accepted yet

    accepted(cap, "a")
    cap.settle("owner", ["a", "b"])  # b was never accepted (blocked, say): it stops counting

    assert cap.take("owner", ["c"], cap=2) == 2
    accepted(cap, "c")
    cap.settle("owner", ["c"])
    with pytest.raises(OverCap):
        cap.take("owner", ["d"], cap=2)
    cap.client.zrem(cap.unfinished_key, "a")  # a finished
    assert cap.take("owner", ["d"], cap=2) == 2


def test_owners_are_counted_apart_and_an_id_already_counted_is_not_counted_again(cap: JobCap) -> None:
    assert cap.take("owner", ["a"], cap=1) == 1
    assert cap.take("owner", ["a"], cap=1) == 1
    assert cap.take("another", ["b"], cap=1) == 1
    with pytest.raises(OverCap, match="2 more would be over the cap of 1"):
        cap.take("another", ["c", "d"], cap=1)
