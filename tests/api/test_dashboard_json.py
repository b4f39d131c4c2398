"""Every dashboard view answers JSON with ``?format=json``: what the page shows, for scripts."""

from __future__ import annotations

import httpx

from queue_config.settings import Settings
from tests.api.test_dashboard import TOKEN, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import failed_job, namespace_for
from tests.queues import IMAGE_BATCH_QUEUE, IMAGE_QUEUE


def test_each_view_answers_json_with_what_its_page_shows(settings: Settings) -> None:
    ns = namespace_for(settings, "json")
    spec, letter = failed_job(ns)
    ns.enqueue(IMAGE_QUEUE, {"job": {"id": "job-delayed"}}, delay_ms=60_000)

    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        views = {path: client.get(f"/dashboard{path}", params={"format": "json"}) for path in (
            "", "/jobs", f"/jobs/{spec.id}", f"/queues/{IMAGE_QUEUE}", "/failed")}
        page = client.get(f"/dashboard/jobs/{spec.id}")
        by_token = httpx.get(f"{url}/dashboard/failed?format=json", headers={"Authorization": f"Bearer {TOKEN}"})
        anonymous = httpx.get(f"{url}/dashboard/failed?format=json")

    for path, answer in views.items():
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json", path
        assert answer.headers["cache-control"] == "no-store" and "csrf_token" not in answer.text, path
    overview, jobs, job, queue, failed = (views[path].json() for path in views)
    assert {row["queue"] for row in overview["stages"]} >= {IMAGE_QUEUE, IMAGE_BATCH_QUEUE}
    assert overview["counts"]["failed"] == 1
    assert [found["id"] for found in jobs["jobs"]] == [spec.id]
    assert job["job"]["state"] == "failed" and job["job"]["error"] == "RuntimeError: out of memory"
    assert queue["stats"]["dead"] == 1 and [m["job_id"] for m in queue["delayed"]] == ["job-delayed"]
    assert [row["message_id"] for row in failed["letters"]] == [letter.message_id]
    assert by_token.json() == failed and anonymous.status_code == 303
    assert page.headers["content-type"].startswith("text/html")
