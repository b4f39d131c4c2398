"""The prompt screen at the doors, over HTTP: uvicorn on loopback, real Redis, the real MiniLM screen.

The namespace is one no worker serves, so what the API enqueues stays queued and can be read back.
This deployment blocks every category but hate, which only flags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from queue_config.jobs import JobSpec
from queue_config.safety_policy import Category
from queue_config.settings import Settings
from tests.api.test_batches_api import BatchApi, upload
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.api.test_ops import cleaned_namespace
from tests.queues import PROMPT_BATCH_QUEUE, PROMPT_QUEUE
from workers.jobs.submit import accept_jobs

OBFUSCATED = "a n.u.d.e person, gore, beheading"
#: Hate only flags in this deployment.
FLAGGED_ONLY = "a nazi propaganda poster glorifying hitler"
FIRST_QUEUES = (PROMPT_QUEUE, PROMPT_BATCH_QUEUE)


@pytest.fixture
def screening_api(settings: Settings) -> Iterator[BatchApi]:
    policy = {"safety_block_categories": frozenset(Category) - {Category.hate},
              "safety_flag_categories": frozenset({Category.hate}), "api_token": TOKEN}
    for ns in cleaned_namespace(settings, "prompt-screen"):
        with api_server(ns.settings.model_copy(update=policy)) as url, client_of(url) as client:
            yield BatchApi(ns, client)


def enqueued_job_ids(api: BatchApi) -> list[str]:
    return [job_id for queue in FIRST_QUEUES for job_id in api.queued_job_ids(queue)]


def test_an_obfuscated_prompt_is_blocked_at_the_door_with_the_reason_in_its_record(screening_api: BatchApi) -> None:
    answer = screening_api.client.post("/v1/jobs", json={"prompt": OBFUSCATED, "kind": "image"})

    assert answer.status_code == 200, answer.text
    job_id, reason = answer.json()["job_id"], answer.json()["reason"]
    record = screening_api.client.get(f"/v1/jobs/{job_id}").json()
    assert answer.json()["state"] == record["state"] == "blocked"
    assert record["blocked_check"] == "prompt" and record["blocked_category"] in {"sexual", "violence"}
    assert record["blocked_score"] >= 0.4 and record["error"] == reason
    assert reason.startswith(f"blocked by the prompt check: {record['blocked_category']} (score ")
    assert job_id not in enqueued_job_ids(screening_api)


def test_a_prompt_of_a_flag_only_category_runs_with_its_flag_recorded(screening_api: BatchApi) -> None:
    answer = screening_api.client.post("/v1/jobs", json={"prompt": FLAGGED_ONLY, "kind": "image"})

    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    record = screening_api.client.get(f"/v1/jobs/{job_id}").json()
    assert record["state"] == "queued" and record["blocked_check"] == ""
    assert record["safety_flags"].startswith("prompt:hate:")
    assert job_id in enqueued_job_ids(screening_api)


def test_a_negative_prompt_that_strips_clothing_is_blocked(screening_api: BatchApi) -> None:
    answer = screening_api.client.post("/v1/jobs", json={
        "prompt": "a woman standing by a window", "negative_prompt": "clothes, clothing, dressed", "kind": "image"})

    record = screening_api.client.get(f"/v1/jobs/{answer.json()['job_id']}").json()
    assert (record["state"], record["blocked_check"], record["blocked_category"]) == (
        "blocked", "negative_prompt", "sexual")


def test_a_batchs_unsafe_line_is_recorded_blocked_and_counted_not_run(screening_api: BatchApi) -> None:
    lines = [{"id": "calm", "prompt": "a red fox in fresh snow", "width": 64, "height": 64},
             {"id": "unsafe", "prompt": OBFUSCATED, "width": 64, "height": 64}]
    answer = upload(screening_api.client, "\n".join(json.dumps(line) for line in lines).encode())

    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batch_id"]
    blocked = screening_api.client.get(f"/v1/jobs/{batch_id}-unsafe").json()
    assert blocked["state"] == "blocked" and blocked["blocked_check"] == "prompt"
    assert enqueued_job_ids(screening_api) == [f"{batch_id}-calm"]
    progress = screening_api.progress(batch_id)
    assert progress["finished"] == 1 and progress["counts"]["blocked"] == 1


def test_accept_jobs_screens_with_the_screen_it_is_given(screening_api: BatchApi) -> None:
    """A door's screen is passed in; here one that finds nothing lets the obfuscated prompt through."""
    class FindsNothing:
        def screen_many(self, texts, check=None):  # type: ignore[no-untyped-def]
            return [[] for _ in texts]

    spec = JobSpec(prompt=OBFUSCATED, width=64, height=64)
    ns = screening_api.ns
    assert accept_jobs(ns.broker, ns.status, [spec], screen=FindsNothing()) == [True]
    assert ns.status.state_of(spec.id) == "queued" and spec.id in enqueued_job_ids(screening_api)


def test_a_batch_whose_every_line_is_blocked_completes_at_once_with_its_manifest(screening_api: BatchApi) -> None:
    lines = [{"id": f"unsafe-{n}", "prompt": OBFUSCATED, "width": 64, "height": 64} for n in range(2)]
    answer = upload(screening_api.client, "\n".join(json.dumps(line) for line in lines).encode())

    assert answer.status_code == 202, answer.text
    progress = screening_api.progress(answer.json()["batch_id"])
    assert progress["completed"] and progress["counts"]["blocked"] == 2
    assert progress["manifest_key"].endswith(".jsonl")
