"""Stage time limits: the defaults outlast a storage outage, and a deployment can set its own."""

from __future__ import annotations

import pytest
from dramatiq.brokers.stub import StubBroker
from pydantic import ValidationError

from queue_config.settings import Settings
from queue_config.stages import STAGES, stage_of_actor
from tests.queues import IMAGE_BATCH_QUEUE, IMAGE_QUEUE
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS


def test_every_default_stage_limit_outlasts_the_storage_retry_deadline() -> None:
    settings = Settings()

    short = {stage: settings.stage_time_limit_ms(stage) for stage in STAGES
             if settings.stage_time_limit_ms(stage) <= settings.storage_retry_s * 1000}

    assert short == {}


def test_a_deployment_sets_one_stages_limit_and_the_actors_run_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEQUEUE_STAGE_TIME_LIMITS_S", '{"image": 1800, "upload": 0.5}')
    settings = Settings()
    limits = {stage: settings.stage_time_limit_ms(stage) for stage in STAGE_FUNCTIONS}

    actors = declare_stage_actors(StubBroker(), STAGE_FUNCTIONS, lambda: None, time_limits_ms=limits)  # type: ignore[arg-type,return-value]

    assert actors[IMAGE_QUEUE].options["time_limit"] == actors[IMAGE_BATCH_QUEUE].options["time_limit"] == 1_800_000
    image_actors = [actor for name, actor in actors.items() if stage_of_actor(name) == "image"]
    assert len(image_actors) > 2 and all(actor.options["time_limit"] == 1_800_000 for actor in image_actors)
    assert actors["upload"].options["time_limit"] == 500
    assert actors["video"].options["time_limit"] == STAGES["video"].time_limit_ms


@pytest.mark.parametrize("value", ['{"imag": 60}', '{"image": 0}', '{"image": "soon"}'])
def test_a_limit_for_an_unknown_stage_or_of_no_time_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FRAMEQUEUE_STAGE_TIME_LIMITS_S", value)

    with pytest.raises(ValidationError, match="stage_time_limits_s"):
        Settings()
