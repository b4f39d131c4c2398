"""A stage's end is queued for the job record before the job's next stage is sent.

Else a fast next stage, on another thread, could write the job's final state while
the stage before it was still unrecorded: a succeeded job without that stage's timing.
"""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Retries

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_of_actor, stage_plan
from workers.jobs.messages import StageMessage, stage_message
from workers.jobs.outcome import StageOutcome
from workers.middleware import JobStatusMiddleware
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors


class RecordAtEachEnqueue(Middleware):
    """Added after the status middleware: at each stage message sent, waits for the writes queued
    so far and reads the job's recorded timings."""

    def __init__(self, status: JobStatusMiddleware) -> None:
        self.status = status
        self.seen: list[tuple[str, set[str]]] = []

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        self.status.writer.flush()  # the writer sends in the order writes came
        record = self.status.store.get(message.args[0]["job"]["id"])
        assert record is not None
        self.seen.append((stage_of_actor(message.actor_name), set(record.timings_s)))


def stub_stage(runtime: Runtime, message: StageMessage) -> StageOutcome:
    return StageOutcome(record={"note": "ran"})


def last_stage(runtime: Runtime, message: StageMessage) -> StageOutcome:
    return StageOutcome(final_state="succeeded")


@pytest.fixture
def runtime(settings: Settings) -> Runtime:
    return Runtime(settings.model_copy(update={"namespace": f"end-order-{uuid.uuid4().hex[:8]}"}))


def test_each_stage_end_is_recorded_before_the_next_stage_is_sent(runtime: Runtime) -> None:
    spec = JobSpec(prompt="a kite over dunes", kind=JobKind.image, width=64, height=64)
    plan = stage_plan(spec.kind)
    runtime.status.create(spec, plan)
    broker = StubBroker()
    status = JobStatusMiddleware(runtime.status)
    broker.add_middleware(status, before=Retries)
    probe = RecordAtEachEnqueue(status)
    broker.add_middleware(probe)
    functions = {stage: stub_stage for stage in plan[:-1]} | {plan[-1]: last_stage}
    actors = declare_stage_actors(broker, functions, lambda: runtime, catalog=runtime.catalog)
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()  # starts the status writer: writes are sent from its thread, as in a worker process
    try:
        broker.enqueue(stage_message(plan[0], StageMessage(job=spec), runtime.catalog))
        for _ in plan:
            for queue_name in actors:
                broker.join(queue_name, fail_fast=True)
        worker.join()
    finally:
        worker.stop()

    assert [stage for stage, _ in probe.seen] == list(plan)
    for position, (stage, timed) in enumerate(probe.seen[1:], start=1):
        assert timed == set(plan[:position]), f"{stage} was sent before {plan[position - 1]}'s end was recorded"
    record = runtime.status.get(spec.id)
    assert record is not None and record.state == "succeeded" and set(record.timings_s) == set(plan)
