"""Hostile and careless entries at the intake: each gets a clear receipt, and the door stays open."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from queue_config.settings import Settings
from workers.broker import build_broker
from workers.doors.intake import CLAIM_IDLE_MS, GROUP, MAX_DELIVERIES, MAX_ENTRY_BYTES, Intake
from workers.jobs.record import JobStatusStore

GOOD_JOB = json.dumps({"prompt": "a glass of water on a table", "kind": "image", "width": 64, "height": 64})
#: Entry fields (raw bytes) and a word the receipt's reason must contain.
HOSTILE_ENTRIES: dict[str, tuple[dict[bytes, bytes], str]] = {
    "absurdly long integer": ({b"job": b'{"prompt": "a fox", "seed": ' + b"9" * 10_000 + b"}"}, "JSON"),
    "very deep nesting": ({b"job": b'{"prompt": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"}, "JSON"),
    "bytes that are not UTF-8 in a value": ({b"job": b'{"prompt": "\xff\xfe"}'}, "UTF-8"),
    "bytes that are not UTF-8 in a field name": ({b"j\xffob": GOOD_JOB.encode()}, "UTF-8"),
    "an entry over the size cap": ({b"job": json.dumps({"prompt": "x" * MAX_ENTRY_BYTES}).encode()}, "larger"),
    "a number too large for a double": ({b"job": b'{"prompt": "a fox", "seed": 1e999}'}, "JSON"),
    "JSON that is not an object": ({b"job": b'["a fox"]'}, "object"),
    "no job field": ({b"prompt": b"a fox"}, "no 'job' field"),
}


@pytest.fixture
def door(settings: Settings) -> tuple[Intake, redis.Redis, JobStatusStore]:
    namespaced = settings.model_copy(update={"namespace": f"hostile-{uuid.uuid4().hex[:8]}"})
    status = JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), namespaced.namespace)
    intake = Intake(status.client, build_broker(namespaced), status, namespaced.namespace)
    return intake, redis.Redis.from_url(settings.redis_url), status


def receipt_of(status: JobStatusStore, intake: Intake, entry_id: bytes) -> dict[str, str]:
    return status.client.hgetall(intake.receipt_prefix + entry_id.decode())


@pytest.mark.parametrize("case", list(HOSTILE_ENTRIES))
def test_a_hostile_entry_is_rejected_with_a_reason_and_the_next_one_is_accepted(door, case: str) -> None:
    intake, raw, status = door
    fields, expected_word = HOSTILE_ENTRIES[case]
    hostile = raw.xadd(intake.stream_key, fields)
    good = raw.xadd(intake.stream_key, {b"job": GOOD_JOB.encode()})

    assert intake.serve_once(block_ms=10) == 2

    answer = receipt_of(status, intake, hostile)
    assert answer["status"] == "rejected" and expected_word in answer["reason"]
    assert "9999999999" not in answer["reason"] and len(answer["reason"]) < 2000
    assert receipt_of(status, intake, good)["status"] == "accepted"
    assert raw.xlen(intake.stream_key) == 0  # answered entries leave the stream; receipts keep the answers


def test_an_entry_its_intakes_keep_dying_on_is_refused_not_claimed_forever(door) -> None:
    intake, raw, status = door
    entry_id = raw.xadd(intake.stream_key, {b"job": GOOD_JOB.encode()})
    raw.xreadgroup(GROUP, "died-1", {intake.stream_key: ">"}, count=1)
    for attempt in range(MAX_DELIVERIES):
        raw.xclaim(intake.stream_key, GROUP, f"died-{attempt + 2}", 0, [entry_id], idle=CLAIM_IDLE_MS + 1)

    assert intake.serve_once(block_ms=10) == 1

    answer = receipt_of(status, intake, entry_id)
    assert answer["status"] == "rejected" and f"handed out {MAX_DELIVERIES} times" in answer["reason"]
    assert raw.xpending(intake.stream_key, GROUP)["pending"] == 0
