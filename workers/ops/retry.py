"""Running a failed job again, as the dashboard's Retry button does."""

from __future__ import annotations

import dramatiq

from queue_config.catalog import catalog_of
from queue_config.jobs import JobSpec
from queue_config.settings import get_settings
from queue_config.stages import stage_plan
from workers.jobs.messages import StageMessage, enqueue_stage
from workers.jobs.record import JobStatusStore
from workers.jobs.reopen import reopen_failed_job
from workers.ops.dead_letters import requeue_dead_letter


def retry_job(broker: dramatiq.Broker, status: JobStatusStore, job_id: str) -> bool:
    """Send a failed job round again. False (and nothing changes) if it is not failed.

    Its dead letter, when the record names one that is still there, is requeued: the job goes on
    from the stage that failed, with what the stages before it made. Otherwise (the letter was
    deleted, or a stage failed the job without one) it starts over from its first stage, from
    the spec its record keeps.
    """
    record = status.get(job_id)
    if record is None or record.state != "failed":
        return False
    queue, _, redis_id = record.dead_letter.partition("\t")
    if redis_id and requeue_dead_letter(broker, status, queue, redis_id):
        return True
    if not record.spec:
        return False
    spec = JobSpec.model_validate(record.spec)
    if not reopen_failed_job(status, job_id, from_start=True):
        return False
    enqueue_stage(broker, stage_plan(spec.kind)[0], StageMessage(job=spec), catalog_of(get_settings()))
    return True
