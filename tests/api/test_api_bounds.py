"""Per-token bounds of the API over HTTP: a request rate (429 with Retry-After) and a cap on unfinished jobs.

Each test serves a namespace of its own that no worker serves: what is submitted stays queued until
the test cancels it or moves it to a final state as a worker would record it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from queue_config.settings import Settings
from tests.api.test_jobs_api import SMALL_IMAGE, TOKEN, api_server, client_of
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.servers import wait_for

OTHER_TOKEN = "another-test-token"
#: One request per 5 s, and two more at once: three pass, the fourth waits up to 5 s.
RATE = {"api_requests_per_minute": 12.0, "api_request_burst": 2}
#: Unfinished jobs a token may have in the cap test.
CAP = 3


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "api-bounds")


def submit(client: httpx.Client, job_id: str) -> httpx.Response:
    return client.post("/v1/jobs", json={**SMALL_IMAGE, "id": job_id})


def upload(client: httpx.Client, *prompts: str) -> httpx.Response:
    lines = "".join(json.dumps({"prompt": prompt, "width": 64, "height": 64}) + "\n" for prompt in prompts)
    return client.post("/v1/batches", files={"file": ("night.jsonl", lines.encode(), "application/octet-stream")})


def test_a_token_over_its_request_rate_gets_429_with_retry_after_and_is_served_again_once_it_passes(
    ns: Namespace,
) -> None:
    own = ns.settings.model_copy(update={"api_token": TOKEN, **RATE})
    with api_server(own) as url, client_of(url) as client, \
            api_server(own.model_copy(update={"api_token": OTHER_TOKEN})) as other_url, \
            client_of(other_url, OTHER_TOKEN) as other:
        assert [client.get("/v1/jobs").status_code for _ in range(3)] == [200, 200, 200]

        refused = client.get("/v1/jobs")
        refused_at = time.monotonic()
        refused_submission = submit(client, "over-the-rate")
        refused_scrape = client.get("/metrics")
        other_answer = other.get("/v1/jobs/over-the-rate")
        with client_of(url, token="a-wrong-token") as stranger:
            stranger_answer = stranger.get("/v1/jobs")
        dashboard = client.get("/dashboard")
        retry_after_s = int(refused.headers["Retry-After"])
        wait_for(lambda: client.get("/v1/jobs").status_code == 200, retry_after_s + 5, "the token's next request slot",
                 interval_s=0.25)
        served_after_s = time.monotonic() - refused_at

    assert refused.status_code == 429 and 1 <= retry_after_s <= 5
    assert refused.json() == {"detail": f"over 12 requests per minute for this token; retry after {retry_after_s} s"}
    assert refused_submission.status_code == refused_scrape.status_code == 429
    assert other_answer.status_code == 404  # the other token has its own rate, and nothing was queued
    assert stranger_answer.status_code == 401  # a wrong token is refused before it is counted
    assert dashboard.status_code == 200  # dashboard pages are not limited
    assert served_after_s >= retry_after_s - 1


def test_a_submission_over_the_tokens_cap_on_unfinished_jobs_is_refused_until_one_finishes_or_is_cancelled(
    ns: Namespace,
) -> None:
    own = ns.settings.model_copy(update={"api_token": TOKEN, "api_max_queued_jobs": CAP})
    answers: dict[str, Any] = {}
    with api_server(own) as url, client_of(url) as client, \
            api_server(own.model_copy(update={"api_token": OTHER_TOKEN})) as other_url, \
            client_of(other_url, OTHER_TOKEN) as other:
        assert [submit(client, f"job-{n}").status_code for n in range(CAP)] == [202] * CAP

        answers["single"] = submit(client, "over-the-cap")
        answers["batch"] = upload(client, "a hare at dusk")
        answers["again"] = submit(client, "job-0")  # already counted: not counted twice
        answers["other"] = submit(other, "of-another-token")
        assert client.post("/v1/jobs/job-0/cancel").status_code == 200
        answers["after_cancel"] = submit(client, "after-a-cancel")
        answers["full_again"] = upload(client, "a hare at dusk")
        ns.status.transition("job-1", "succeeded")  # as a worker records a job's end
        answers["after_finish"] = upload(client, "a hare at dusk")
        answers["batch_over"] = upload(client, "an owl", "a stoat")
        answers["over_at_once"] = upload(client, *(f"a fox, take {n}" for n in range(CAP + 1)))

    refused = answers["single"]
    assert refused.status_code == 429, refused.text
    assert refused.json() == {"detail": f"too many unfinished jobs for this token: {CAP} unfinished jobs and 1 more "
                                        f"would be over the cap of {CAP} unfinished jobs; wait for some to finish or "
                                        "cancel them"}
    assert ns.status.state_of("over-the-cap") is None and answers["batch"].status_code == 429
    assert (answers["again"].status_code, answers["again"].json()["created"]) == (200, False)
    assert answers["other"].status_code == 202  # the other token has a cap of its own
    assert answers["after_cancel"].status_code == 202
    assert answers["full_again"].status_code == 429
    assert answers["after_finish"].status_code == 202, answers["after_finish"].text
    assert answers["batch_over"].status_code == 429 and "2 more" in answers["batch_over"].text
    assert answers["over_at_once"].status_code == 429 and f"{CAP + 1} more" in answers["over_at_once"].text
    jobs = ns.status.list_jobs(limit=100)  # nothing of the refused submissions was recorded
    assert len(jobs) == 6 and sum(not job.finished for job in jobs) == CAP + 1  # the token's 3, the other's 1
