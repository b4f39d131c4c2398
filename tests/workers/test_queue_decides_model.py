"""A stage runs the model of the queue its message came by, whatever the worker's own catalog would route."""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.stub import StubBroker

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors


def test_the_queue_a_message_came_by_names_the_model_its_stage_runs() -> None:
    runtime = Runtime(Settings())
    routed: list[str | None] = []

    def image(resources: Runtime, message: StageMessage) -> StageOutcome:
        routed.append(resources.catalog.route(message.job, "image", message.models))
        return StageOutcome(final_state="succeeded")

    actors = declare_stage_actors(StubBroker(), {"image": image}, lambda: runtime, catalog=runtime.catalog)
    default = JobSpec(prompt="a paper boat", kind=JobKind.image)
    chosen = JobSpec(prompt="a paper boat", kind=JobKind.image, models={"image": "tiny-sd"})
    payload: dict[str, Any] = StageMessage(job=default).model_dump(mode="json")

    actors["image.tiny-sd-alt"].fn(payload)  # a sender whose catalog defaulted image to tiny-sd-alt
    actors["image.tiny-sd"].fn(payload)
    actors["image_batch.tiny-sd-alt"].fn(StageMessage(job=chosen).model_dump(mode="json"))

    assert routed == ["tiny-sd-alt", "tiny-sd", "tiny-sd-alt"]
