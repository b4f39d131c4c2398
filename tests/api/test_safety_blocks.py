"""Safety blocks where operators look: the metric on /metrics, the Blocked page, a blocked job's page."""

from __future__ import annotations

import html
from collections.abc import Iterator

import httpx
import pytest

from queue_config.jobs import JobKind, JobSpec
from queue_config.safety_policy import Category, Check, SafetyFinding
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.api.test_jobs_api import api_server
from tests.api.test_metrics import scrape, value
from tests.api.test_ops import Namespace, namespace_for
from workers.jobs.outcome import StageOutcome

TOKEN = "blocks-token"


@pytest.fixture(scope="module")
def served(settings: Settings) -> Iterator[tuple[Namespace, httpx.Client]]:
    """A namespace of its own (no worker) and a client of an API serving it, holding the token."""
    ns = namespace_for(settings, "blocks")
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        yield ns, client


def blocked_by_a_stage(ns: Namespace, finding: SafetyFinding, stage: str) -> str:
    """A video job that ``stage`` blocked with ``finding``, as the status middleware records it."""
    spec = JobSpec(prompt="a harbour at night", kind=JobKind.video)
    plan = stage_plan(spec.kind)
    ns.status.create(spec, plan)
    ns.status.stage_started(spec.id, stage, plan.index(stage))
    record = {f"safety_score.{finding.check.value}": f"{finding.score:.4f}", **finding.record_fields()}
    ns.status.stage_finished(spec.id, stage, 0.2, StageOutcome(record=record, final_state="blocked"))
    return spec.id


def blocked_at_submission(ns: Namespace, finding: SafetyFinding) -> str:
    spec = JobSpec(prompt="a harbour at night", kind=JobKind.image)
    fields = finding.record_fields()
    ns.status.create(spec, stage_plan(spec.kind), state="blocked", error=fields.pop("error"), **fields)
    return spec.id


def test_blocks_are_counted_on_metrics_by_check_and_category(served: tuple[Namespace, httpx.Client]) -> None:
    ns, client = served
    before = scrape(client)

    blocked_by_a_stage(ns, SafetyFinding(Check.image, Category.sexual, 0.97, 0.8), "image")
    blocked_by_a_stage(ns, SafetyFinding(Check.image, Category.sexual, 0.91, 0.8), "image")
    blocked_by_a_stage(ns, SafetyFinding(Check.frames, Category.sexual, 0.88, 0.8), "safety_check")
    blocked_at_submission(ns, SafetyFinding(Check.prompt, Category.violence, 1.0, 0.5))
    samples = scrape(client)

    def grew(check: str, category: str) -> float:
        name, labels = "framequeue_safety_blocks_total", {"check": check, "category": category}
        return value(samples, name, **labels) - value(before, name, **labels)

    assert (grew("image", "sexual"), grew("frames", "sexual"), grew("prompt", "violence")) == (2, 1, 1)


def test_the_blocked_page_lists_the_newest_blocks_with_check_category_score_and_link(
    served: tuple[Namespace, httpx.Client]
) -> None:
    ns, client = served
    older = blocked_by_a_stage(ns, SafetyFinding(Check.frames, Category.sexual, 0.88, 0.8), "safety_check")
    newer = blocked_at_submission(ns, SafetyFinding(Check.prompt, Category.violence, 1.0, 0.5))

    response = client.get("/dashboard/blocked")

    assert response.status_code == 200
    page = html.unescape(response.text)
    rows = page.split('<tr data-job="')[1:]
    ids = [row.split('"', 1)[0] for row in rows]
    assert ids.index(newer) < ids.index(older)
    older_row = rows[ids.index(older)]
    assert f'href="/dashboard/jobs/{older}"' in older_row
    assert "<td>frames</td><td>sexual</td>" in older_row and "0.880" in older_row
    assert "<td>prompt</td><td>violence</td>" in rows[ids.index(newer)]
    counts = page.split('id="block-counts"', 1)[1].split("</table>", 1)[0]
    assert '<tr data-check="frames" data-category="sexual">' in counts
    assert '<tr data-check="prompt" data-category="violence">' in counts


def test_a_blocked_job_s_page_says_which_check_blocked_it(served: tuple[Namespace, httpx.Client]) -> None:
    ns, client = served
    job_id = blocked_by_a_stage(ns, SafetyFinding(Check.image, Category.sexual, 0.97, 0.8), "image")

    response = client.get(f"/dashboard/jobs/{job_id}")

    assert response.status_code == 200
    blocked_by = response.text.split('id="blocked-by">', 1)[1].split("</dd>", 1)[0]
    assert blocked_by == "the image check: sexual (score 0.970)"
    assert "safety score (image)" in response.text
