"""Putting jobs on the queue: the Python way in, used by every door.

Each job's prompt and negative prompt are screened first (``workers.jobs.screening``): a job
the deployment's safety policy blocks is recorded ``blocked``, with the check, category and
score that blocked it, and never enqueued; a flagged job runs with its flags in its record.
Messages are built and enqueued directly rather than through the actor objects, so that
submitting does not import the model code. A tenant's job starts on its tenant's pending list, from
which the dispatcher takes it by fair share (``workers.jobs.fair_share``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from queue_config.catalog import Catalog, catalog_of
from queue_config.jobs import JobSpec
from queue_config.safety_policy import SafetyPolicy
from queue_config.settings import get_settings
from queue_config.stages import stage_plan
from workers.broker import FramequeueBroker
from workers.jobs import fair_share
from workers.jobs.messages import StageMessage, stage_message
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import JobStatusStore
from workers.jobs.screening import Screen, Verdict, default_screen, screen_jobs


def accept_jobs(
    broker: FramequeueBroker,
    status: JobStatusStore,
    specs: list[JobSpec],
    *,
    emit: bool = True,
    policy: SafetyPolicy | None = None,
    screen: Screen | None = None,
    catalog: Catalog | None = None,
) -> list[bool]:
    """Screen validated jobs, then record them: blocked ones as ``blocked`` with no message, the rest
    with their first stages enqueued, each job all or nothing. For each, whether it was new.

    ``policy`` defaults to the process settings' ``safety_policy``; ``screen`` to the process's screen;
    ``catalog``, which routes each first stage to its model's queue, to the settings' catalog.
    """
    verdicts = screen_jobs(screen or default_screen(), policy or get_settings().safety_policy, specs)
    return _record_screened(broker, status, specs, verdicts, catalog or catalog_of(get_settings()), emit=emit)


def _record_screened(
    broker: FramequeueBroker, status: JobStatusStore, specs: Sequence[JobSpec], verdicts: Sequence[Verdict],
    catalog: Catalog, *, emit: bool = True,
) -> list[bool]:
    fields = {spec.id: verdict.record_fields() for spec, verdict in zip(specs, verdicts, strict=True)}
    blocked = [spec for spec, verdict in zip(specs, verdicts, strict=True) if verdict.blocked is not None]
    passed = [spec for spec, verdict in zip(specs, verdicts, strict=True) if verdict.blocked is None]
    first = {spec.id: stage_message(stage_plan(spec.kind)[0], StageMessage(job=spec), catalog) for spec in passed}
    for message in first.values():
        broker.declare_queue(message.queue_name)
    new: dict[int, bool] = {}
    if blocked:
        created = status.accept_many(blocked, lambda spec: stage_plan(spec.kind), lambda _: None, state="blocked",
                                     emit=emit, fields_of=lambda spec: fields[spec.id])
        new.update(zip(map(id, blocked), created, strict=True))
    if passed:
        # A tenant's first message waits on its pending list for the fair-share dispatcher.
        queued = {spec.id: fair_share.hold(broker.queued_message(first[spec.id]), spec.tenant) for spec in passed}
        held = fair_share.announce(status.client, status.namespace, queued.values())
        created = status.accept_many(passed, lambda spec: stage_plan(spec.kind), lambda spec: queued[spec.id],
                                     emit=emit, fields_of=lambda spec: fields[spec.id])
        new.update(zip(map(id, passed), created, strict=True))
        if held:
            fair_share.wake_dispatcher(status.client, status.namespace)
    return [new[id(spec)] for spec in specs]


@dataclass(frozen=True)
class Submission:
    job_id: str
    state: str
    #: False when a job with this id had already been submitted (nothing was enqueued again).
    created: bool
    reason: str = ""


def submit_job(
    broker: FramequeueBroker,
    status: JobStatusStore,
    spec: JobSpec,
    *,
    policy: SafetyPolicy | None = None,
    screen: Screen | None = None,
    catalog: Catalog | None = None,
) -> Submission:
    """Screen, record and enqueue a validated job. Submitting the same id twice enqueues it once.

    ``queued`` means accepted: the record and the first message are in Redis together. A job
    resubmitted after it lost its message (see ``Reconciler``) is sent on again. ``blocked``
    comes with the reason, which the record's ``error`` also holds. ``policy`` and ``screen``
    and ``catalog`` default as ``accept_jobs``'s do.
    """
    verdict = screen_jobs(screen or default_screen(), policy or get_settings().safety_policy, [spec])[0]
    catalog = catalog or catalog_of(get_settings())
    if verdict.blocked is not None:
        created = _record_screened(broker, status, [spec], [verdict], catalog)[0]
        return Submission(spec.id, "blocked", created, verdict.blocked.reason())
    if not _record_screened(broker, status, [spec], [verdict], catalog)[0]:
        reconciler = Reconciler(status, broker, catalog=catalog)
        if reconciler.lost([spec.id]):
            reconciler.repair(spec.id)
        return Submission(spec.id, status.state_of(spec.id) or "unknown", created=False)
    return Submission(spec.id, "queued", created=True)
