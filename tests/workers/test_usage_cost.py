"""What a run costs by its catalog model, and how a usage report's first day is read."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.metering import Meter
from queue_config.catalog import CatalogModel, load_catalog, shipped_catalog
from workers.jobs.outcome import StageOutcome
from workers.jobs.usage import UsageRecorder, run_cost
from workers.ops.usage import parse_since

LOCAL = CatalogModel.model_validate({
    "id": "gpu-image", "stage": "image", "cost": {"per_call": 0.01, "per_second": 0.5, "per_megapixel": 1.0},
    "backend": {"kind": "local", "pipeline": "AutoPipelineForText2Image", "model": "tiny:image"}})
REMOTE = CatalogModel.model_validate({
    "id": "far-image", "stage": "image", "cost": {"per_call": 0.25, "per_second": 0.1},
    "backend": {"kind": "remote", "provider": "sim", "model": "m"}})


def test_a_local_run_on_a_gpu_pays_for_its_device_seconds_not_its_wall_time() -> None:
    assert run_cost(LOCAL, wall_s=9.0, device_s=2.0, calls=0, megapixels=0.25, served=True) == pytest.approx(
        0.01 + 0.5 * 2.0 + 0.25)


def test_a_remote_run_pays_per_call_and_for_its_wall_time_and_only_when_it_called() -> None:
    assert run_cost(REMOTE, wall_s=3.0, device_s=0.0, calls=3, megapixels=0.25, served=False) == pytest.approx(
        3 * 0.25 + 0.1 * 3.0)
    assert run_cost(REMOTE, wall_s=3.0, device_s=0.0, calls=0, megapixels=0.25, served=False) == 0.0


def test_a_stage_served_from_the_cache_costs_nothing() -> None:
    tiny = load_catalog(shipped_catalog("tiny"))
    catalog = tiny.model_copy(update={"models": {**tiny.models, "tiny-sd": LOCAL.model_copy(update={"id": "tiny-sd"})}})
    recorder = UsageRecorder(lambda: catalog, retention_s=60)
    cached = StageOutcome(record={"model.image": "tiny-sd@x", "cached.image": "earlier-job"})
    fresh = StageOutcome(record={"model.image": "tiny-sd@x"})
    job = {"id": "j", "width": 500, "height": 200}

    hit = recorder.run_of(job, "image.tiny-sd", Meter(), 0.2, cached)
    run = recorder.run_of(job, "image_batch.tiny-sd", Meter(), 0.2, fresh)

    assert (hit.tenant, hit.model, hit.completed, hit.cost) == ("operator", "tiny-sd", True, 0.0)
    assert run.cost == pytest.approx(0.01 + 0.5 * 0.2 + 0.1)  # on the CPU: wall seconds; 500 x 200 px


@pytest.mark.parametrize(("text", "first"), [("today", "2026-03-10"), ("1d", "2026-03-10"), ("7d", "2026-03-04"),
                                             ("2026-02-28", "2026-02-28")])
def test_since_is_a_day_today_or_a_number_of_days_today_included(text: str, first: str) -> None:
    assert parse_since(text, today=dt.date(2026, 3, 10)).isoformat() == first


@pytest.mark.parametrize("text", ["0d", "yesterday", "2026-02-30", "401d"])
def test_since_that_is_no_day_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="since"):
        parse_since(text, today=dt.date(2026, 3, 10))
