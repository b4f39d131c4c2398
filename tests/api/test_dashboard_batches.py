"""Batches for operators: batch queues in ``workers.ops`` and the dashboard's batch panel, page and actions.

Each namespace here is one no worker serves: submitted batch jobs stay queued unless a test moves them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from queue_config.stages import STAGES
from tests.api.test_dashboard import TOKEN, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, cleaned_namespace, namespace_for, stats_of
from tests.queues import IMAGE_BATCH_QUEUE, IMAGE_QUEUE, PROMPT_BATCH_QUEUE, PROMPT_QUEUE
from workers import batches, ops
from workers.batches.files import parse_batch


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "batch-ops")


@pytest.fixture(scope="module")
def dashboard(settings: Settings) -> Iterator[tuple[Namespace, str]]:
    ns = namespace_for(settings, "dashboard-batches")
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url:
        yield ns, url


def submit_batch(ns: Namespace, prompts: tuple[str, ...] = ("a fox", "a hare", "an owl")) -> tuple[str, list[str]]:
    """A batch of image jobs, one per prompt, submitted as a JSONL file would be: (batch id, job ids by line)."""
    batch_id = f"b{uuid.uuid4().hex[:12]}"
    data = "".join(json.dumps({"prompt": p, "width": 64, "height": 64}) + "\n" for p in prompts)
    lines = parse_batch(data, batch_id=batch_id, fmt="jsonl")
    batches.submit_lines(ns.status, ns.broker, batch_id, f"{batch_id}.jsonl", lines)
    return batch_id, [line.spec.id for line in lines if line.spec is not None]


def fail(ns: Namespace, job_id: str) -> None:
    """The job fails for good at its image stage, as a worker would record it."""
    ns.status.stage_started(job_id, "image", 1)
    ns.status.stage_failed(job_id, "image", "RuntimeError: out of memory", f"message-of-{job_id}")


# workers.ops ------------------------------------------------------------------------------------

def test_every_stage_has_its_interactive_and_its_batch_queue_listed(ns: Namespace) -> None:
    names = ops.queue_names()

    assert names[:2] == [PROMPT_QUEUE, PROMPT_BATCH_QUEUE]
    catalog = catalog_of(Settings())
    assert set(names) == {queue for stage, options in STAGES.items()
                          for model in ([model.id for model in catalog.of_stage(stage)] or [None])
                          for queue in options.queue_names(model)}
    assert "image.tiny-sd-alt" in names and "video_batch" in names
    assert [stats.name for stats in ops.queue_stats(ns.status)] == names
    assert stats_of(ns, IMAGE_BATCH_QUEUE).batch and stats_of(ns, IMAGE_BATCH_QUEUE).stage == "image"
    assert not stats_of(ns, IMAGE_QUEUE).batch


def test_a_submitted_batch_is_counted_on_its_first_stage_batch_queue_only(ns: Namespace) -> None:
    submit_batch(ns)
    ns.enqueue(PROMPT_BATCH_QUEUE, {"job": {}}, delay_ms=60_000)
    ns.fetch(PROMPT_BATCH_QUEUE)

    assert stats_of(ns, PROMPT_BATCH_QUEUE) == ops.QueueStats(PROMPT_BATCH_QUEUE, 2, 1, 1, 0)
    assert stats_of(ns, PROMPT_QUEUE) == ops.QueueStats(PROMPT_QUEUE, 0, 0, 0, 0)
    held = {worker.id: worker.in_flight for worker in ops.broker_heartbeats(ns.status, heartbeat_timeout_ms=60_000)}
    assert held[ns.broker.broker_id] == {PROMPT_BATCH_QUEUE: 1}


def test_batch_dead_letters_are_listed_requeued_and_deleted_like_any_other(ns: Namespace) -> None:
    _, [job_id, other_id, _] = submit_batch(ns)
    for queued in (job_id, other_id):
        fail(ns, queued)
    requeued = ns.dead_letter(IMAGE_BATCH_QUEUE, {"job": {"id": job_id}}, "RuntimeError: out of memory", job_id=job_id)
    deleted = ns.dead_letter(IMAGE_BATCH_QUEUE, {"job": {"id": other_id}}, job_id=other_id)

    letters = {letter.message_id: letter for letter in ops.dead_letters(ns.status, IMAGE_BATCH_QUEUE)}
    assert stats_of(ns, IMAGE_BATCH_QUEUE).dead == 2 and stats_of(ns, IMAGE_QUEUE).dead == 0
    assert letters[requeued.message_id].queue == IMAGE_BATCH_QUEUE and letters[requeued.message_id].job_id == job_id

    assert ops.requeue_dead_letter(ns.broker, ns.status, IMAGE_BATCH_QUEUE, requeued.options["redis_message_id"])
    assert ops.delete_dead_letter(ns.status, IMAGE_BATCH_QUEUE, deleted.options["redis_message_id"])

    assert stats_of(ns, IMAGE_BATCH_QUEUE) == ops.QueueStats(IMAGE_BATCH_QUEUE, ready=1, delayed=0, in_flight=0, dead=0)
    assert ops.ready_messages(ns.status, IMAGE_BATCH_QUEUE)[0]["message_id"] == requeued.message_id
    assert ns.status.state_of(job_id) == "queued"


def test_emptying_a_batch_queue_cancels_its_jobs_and_counts_them_in_the_batch(ns: Namespace) -> None:
    batch_id, job_ids = submit_batch(ns)

    assert ops.empty_queue(ns.status, PROMPT_BATCH_QUEUE) == 3

    assert [ns.status.state_of(job_id) for job_id in job_ids] == ["cancelled"] * 3
    progress = batches.batch_progress(ns.status, batch_id)
    assert progress is not None and progress["finished"] == 3 and progress["counts"]["cancelled"] == 3


def test_batches_are_listed_newest_first(ns: Namespace) -> None:
    older, _ = submit_batch(ns, ("a kite",))
    newer, _ = submit_batch(ns, ("a sail", "a mast"))
    ns.status.client.hset(ns.status.batch_key(older), "created_at", 1_000)

    listed = batches.list_batches(ns.status)

    assert [(b["batch_id"], b["total"]) for b in listed] == [(newer, 2), (older, 1)]
    assert listed[1]["created_at"] == 1_000 and batches.list_batches(ns.status, limit=1)[0]["batch_id"] == newer


# The dashboard ----------------------------------------------------------------------------------

def test_the_overview_lists_batches_and_the_batch_page_shows_progress_and_jobs_by_line(
    dashboard: tuple[Namespace, str]
) -> None:
    ns, url = dashboard
    batch_id, job_ids = submit_batch(ns, ("a heron", "a crane", "a stork"))
    fail(ns, job_ids[1])

    with signed_in(url) as client:
        overview = client.get("/dashboard").text
        page = client.get(f"/dashboard/batches/{batch_id}")
        missing = client.get("/dashboard/batches/b-never-submitted")

    row = re.search(rf'<tr data-batch="{batch_id}">(.*?)</tr>', overview, re.S)
    assert row and f'href="/dashboard/batches/{batch_id}"' in row.group(1)
    assert 'data-batch-count="failed"' in row.group(1)
    assert f'data-queue="{PROMPT_BATCH_QUEUE}"' in overview
    assert page.status_code == 200 and missing.status_code == 404
    assert 'data-finished="1"' in page.text and "1 of 3" in page.text and 'data-batch-count="failed"' in page.text
    assert re.findall(r'<tr data-job="([^"]+)">', page.text) == job_ids
    assert "RuntimeError: out of memory" in page.text
    assert f'action="/dashboard/batches/{batch_id}/retry-failed"' in page.text
    assert f'action="/dashboard/batches/{batch_id}/cancel"' in page.text


def test_retry_failed_asks_first_then_queues_the_failed_jobs_again(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    batch_id, job_ids = submit_batch(ns, ("a wren", "a robin"))
    fail(ns, job_ids[0])
    path, back = f"/dashboard/batches/{batch_id}/retry-failed", f"/dashboard/batches/{batch_id}"
    ready_before = stats_of(ns, PROMPT_BATCH_QUEUE).ready

    with signed_in(url) as client:
        ask = client.post(path, data=client.form(back=back))
        assert ns.status.state_of(job_ids[0]) == "failed"
        done = client.post(path, data=client.form(back=back, confirmed="yes"))
        again = client.post(path, data=client.form(back=back, confirmed="yes"))
        unknown = client.post("/dashboard/batches/b-never-submitted/retry-failed", data=client.form(confirmed="yes"))
        flash = client.get(done.headers["location"]).text

    assert ask.status_code == 200 and "Are you sure?" in ask.text
    assert done.status_code == 303 and done.headers["location"] == f"{back}?done=retried"
    assert again.headers["location"] == f"{back}?done=gone" and unknown.status_code == 404
    assert "queued again" in flash and ns.status.state_of(job_ids[0]) == "queued"
    assert stats_of(ns, PROMPT_BATCH_QUEUE).ready == ready_before + 1
    progress = batches.batch_progress(ns.status, batch_id)
    assert progress is not None and (progress["finished"], progress["counts"]["failed"]) == (0, 0)


def test_cancel_asks_first_then_cancels_the_batch_and_links_its_manifest(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    batch_id, job_ids = submit_batch(ns, ("a barn", "a silo", "a mill"))
    fail(ns, job_ids[2])
    path, back = f"/dashboard/batches/{batch_id}/cancel", f"/dashboard/batches/{batch_id}"

    with signed_in(url) as client:
        ask = client.post(path, data=client.form(back=back))
        assert ns.status.state_of(job_ids[0]) == "queued"
        done = client.post(path, data=client.form(back=back, confirmed="yes"))
        page = client.get(back).text
        overview = client.get("/dashboard").text

    assert "Are you sure?" in ask.text and done.headers["location"] == f"{back}?done=batch_cancelled"
    assert [ns.status.state_of(job_id) for job_id in job_ids] == ["cancelled", "cancelled", "failed"]
    assert 'data-state="completed"' in page and "/cancel" not in page
    manifest = re.search(r'<a href="([^"]+)" rel="noreferrer">manifests/batches/', page)
    assert manifest and manifest.group(1).startswith("http")
    entries = [json.loads(line) for line in httpx.get(manifest.group(1).replace("&amp;", "&")).text.splitlines()]
    assert [(entry["job_id"], entry["state"]) for entry in entries] == list(
        zip(job_ids, ["cancelled", "cancelled", "failed"], strict=True))
    assert re.search(rf'<tr data-batch="{batch_id}">.*?>manifest</a>', overview, re.S)


def test_emptying_a_batch_queue_from_the_dashboard_completes_the_batches_it_ends(
    dashboard: tuple[Namespace, str]
) -> None:
    ns, url = dashboard
    ops.empty_queue(ns.status, PROMPT_BATCH_QUEUE)
    batch_id, job_ids = submit_batch(ns, ("a pier", "a buoy"))

    with signed_in(url) as client:
        emptied = client.post(f"/dashboard/queues/{PROMPT_BATCH_QUEUE}/empty",
                              data=client.form(back="/dashboard", confirmed="yes"))
        queue_page = client.get(f"/dashboard/queues/{PROMPT_BATCH_QUEUE}").text

    assert emptied.headers["location"] == "/dashboard?done=emptied"
    assert [ns.status.state_of(job_id) for job_id in job_ids] == ["cancelled", "cancelled"]
    progress = batches.batch_progress(ns.status, batch_id)
    assert progress is not None and progress["completed"] and progress["manifest_key"]
    assert "unfinished jobs at stage prompt_enhance" in queue_page
