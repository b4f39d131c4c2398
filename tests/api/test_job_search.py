"""Job search and cursor pagination over the job index, and the dashboard's job list that uses them."""

from __future__ import annotations

import re
from html import unescape

import pytest

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.api.test_dashboard import TOKEN, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, namespace_for
from workers.ops.job_search import BadCursor, JobQuery, search_jobs


def recorded(ns: Namespace, count: int, prompt: str = "a heron", batch_id: str | None = None) -> list[str]:
    """``count`` jobs recorded in one call, so that they share one creation time (as a batch's do)."""
    specs = [JobSpec(prompt=f"{prompt} {i}", kind=JobKind.image, width=64, height=64, batch_id=batch_id)
             for i in range(count)]
    ns.status.accept_many(specs, lambda spec: stage_plan(spec.kind), lambda _: None)
    return [spec.id for spec in specs]


def every_page(ns: Namespace, query: JobQuery, limit: int, **options: int) -> list[list[str]]:
    pages, cursor = [], ""
    for _ in range(50):
        page = search_jobs(ns.status, query, limit=limit, cursor=cursor, **options)
        pages.append([job.id for job in page.jobs])
        if not (cursor := page.next_cursor):
            return pages
    raise AssertionError(f"still paging after 50 pages: {pages[:4]}...")


def test_pages_cover_the_index_once_newest_first_even_within_one_creation_time(settings: Settings) -> None:
    ns = namespace_for(settings, "pages")
    older = recorded(ns, 7)  # one creation time: ordered by id within it
    newer = recorded(ns, 5)

    pages = every_page(ns, JobQuery(), limit=4)

    assert [len(page) for page in pages] == [4, 4, 4]
    assert [job for page in pages for job in page] == sorted(newer, reverse=True) + sorted(older, reverse=True)


def test_jobs_accepted_meanwhile_neither_shift_nor_repeat_the_next_page(settings: Settings) -> None:
    ns = namespace_for(settings, "stable")
    first_ids = recorded(ns, 6)
    first = search_jobs(ns.status, JobQuery(), limit=3)
    recorded(ns, 4)

    second = search_jobs(ns.status, JobQuery(), limit=3, cursor=first.next_cursor)

    assert [job.id for job in first.jobs + second.jobs] == sorted(first_ids, reverse=True)
    assert second.next_cursor == ""


def test_search_finds_jobs_by_prompt_text_id_and_batch(settings: Settings) -> None:
    ns = namespace_for(settings, "find")
    herons = recorded(ns, 3, "A grey Heron")
    crabs = recorded(ns, 2, "a red crab", batch_id="b-crabs")

    by_text = search_jobs(ns.status, JobQuery(text="heron"), limit=10)
    by_id = search_jobs(ns.status, JobQuery(text=herons[1][:12].upper()), limit=10)
    by_batch = search_jobs(ns.status, JobQuery(batch_id="b-crabs"), limit=10)
    nothing = search_jobs(ns.status, JobQuery(text="walrus"), limit=10)

    assert sorted(job.id for job in by_text.jobs) == sorted(herons)
    assert [job.id for job in by_id.jobs] == [herons[1]]
    assert sorted(job.id for job in by_batch.jobs) == sorted(crabs)
    assert nothing.jobs == [] and nothing.next_cursor == "" and nothing.scanned == 5


def test_a_text_search_looks_at_a_bounded_window_per_page_and_says_so(settings: Settings) -> None:
    ns = namespace_for(settings, "window")
    [needle] = recorded(ns, 1, "a lone walrus")
    recorded(ns, 9, "a heron")

    first = search_jobs(ns.status, JobQuery(text="walrus"), limit=5, scan_window=4)
    pages = every_page(ns, JobQuery(text="walrus"), limit=5, scan_window=4)

    assert first.jobs == [] and first.scanned == 4 and first.window_spent and first.next_cursor
    assert pages == [[], [], [needle]]
    with pytest.raises(BadCursor):
        search_jobs(ns.status, JobQuery(), cursor="not-a-cursor")


def test_the_job_list_pages_on_with_its_next_link(settings: Settings) -> None:
    ns = namespace_for(settings, "joblist")
    ids = recorded(ns, 25, "a kite")

    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        first = client.get("/dashboard/jobs", params={"limit": 20, "q": "kite"}).text
        link = re.search(r'<a rel="next" href="([^"]+)"', first)
        assert link
        second = client.get(unescape(link.group(1))).text
        bad = client.get("/dashboard/jobs", params={"cursor": "nope"})

    shown = [set(re.findall(r'/dashboard/jobs/([0-9a-f]{32})"', page)) for page in (first, second)]
    assert len(shown[0]) == 20 and len(shown[1]) == 5 and shown[0] | shown[1] == set(ids)
    assert 'rel="next"' not in second and 'rel="first"' in second and "q=kite" in link.group(1)
    assert bad.status_code == 400
