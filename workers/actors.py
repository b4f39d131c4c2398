"""The stage actors, one per stage, each on its own queue.

Importing this module sets up the broker and declares every actor: it is
what ``dramatiq workers.actors`` loads. Each actor is the same thin shell:
validate the message, run the stage function, record its artifacts, then
send the job to its next stage or finish it.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from queue_config.broker import build_broker
from queue_config.settings import get_settings
from queue_config.stages import STAGES, StageOptions, stage_plan
from workers.errors import InvalidJob
from workers.messages import StageMessage
from workers.runtime import get_runtime
from workers.stages import STAGE_FUNCTIONS, StageFunction
from workers.submit import enqueue_stage

broker = build_broker(get_settings())
dramatiq.set_broker(broker)


def next_stage(message: StageMessage, stage: str) -> str | None:
    plan = stage_plan(message.job.kind)
    position = plan.index(stage)
    return plan[position + 1] if position + 1 < len(plan) else None


def _declare(options: StageOptions, function: StageFunction) -> dramatiq.Actor[..., None]:
    def run_stage(payload: Any) -> None:
        message = StageMessage.parse(payload)
        if options.name not in stage_plan(message.job.kind):
            raise InvalidJob(f"stage {options.name!r} is not part of a {message.job.kind.value} job")
        runtime = get_runtime()
        outcome = function(runtime, message)
        for name, stored in outcome.artifacts.items():
            runtime.status.add_artifact(message.job.id, name, stored.as_dict())
        if outcome.final_state:
            runtime.status.transition(message.job.id, outcome.final_state, stage=options.name, **outcome.record)
            return
        runtime.status.annotate(message.job.id, **outcome.record)
        following = next_stage(message, options.name)
        if following is not None:
            enqueue_stage(broker, following, message.with_refs(**outcome.refs))

    run_stage.__name__ = options.name
    return dramatiq.actor(
        run_stage,
        actor_name=options.name,
        queue_name=options.queue_name,
        max_retries=options.max_retries,
        min_backoff=options.min_backoff_ms,
        max_backoff=options.max_backoff_ms,
        time_limit=options.time_limit_ms,
        throws=(InvalidJob,),
    )


ACTORS: dict[str, dramatiq.Actor[..., None]] = {
    name: _declare(options, STAGE_FUNCTIONS[name]) for name, options in STAGES.items()
}
