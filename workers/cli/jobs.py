"""The ``framequeue`` commands that act on jobs already submitted: jobs, cancel, requeue."""

from __future__ import annotations

import argparse
from typing import Any

from queue_config.settings import Settings
from queue_config.stages import STAGES
from workers.broker import build_broker
from workers.cli.errors import EXIT_FAILURE, CliError, NotFound
from workers.cli.output import clipped, print_json, print_table, when
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.ops.job_search import BadCursor, JobQuery, search_jobs

#: The states a job can be in, for ``jobs --state``.
JOB_STATES = ("queued", "running", "waiting", *TERMINAL_STATES)


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """List jobs newest first, filtered, a page at a time."""
    query = JobQuery(state=args.state or "", kind=args.kind or "", stage=args.stage or "", batch_id=args.batch or "",
                     text=args.search or "")
    try:
        page = search_jobs(JobStatusStore.from_settings(settings), query, limit=args.limit, cursor=args.cursor or "")
    except BadCursor as error:
        raise CliError(f"--cursor: {error}") from None
    if args.json:
        print_json({"jobs": [record.as_dict() for record in page.jobs], "next_cursor": page.next_cursor or None,
                    "scanned": page.scanned})
        return 0
    print_table(
        ["id", "state", "kind", "stage", "created", "batch", "prompt"],
        ([record.id, record.state, record.kind, record.stage, when(record.created_at),
          record.spec.get("batch_id") or "", clipped(str(record.spec.get("prompt", "")), 50)] for record in page.jobs),
        empty="no job matches",
    )
    if page.window_spent and page.next_cursor:
        print(f"looked at {page.scanned} jobs without filling the page; more: --cursor {page.next_cursor}")
    elif page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel a job that has not finished; workers skip its messages from then on."""
    status = JobStatusStore.from_settings(settings)
    if status.cancel(args.job_id):
        print(f"job {args.job_id}: cancelled")
        return 0
    state = status.state_of(args.job_id)
    if state is None:
        raise NotFound(f"no job {args.job_id}")
    raise CliError(f"job {args.job_id} has already finished ({state}); nothing to cancel", EXIT_FAILURE)


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    """Run a failed job again, or put back the dead letter named by queue and broker id.

    A job goes as the dashboard's Retry sends it: its dead letter requeued, else from its first stage.
    """
    from workers import ops

    status = JobStatusStore.from_settings(settings)
    broker = build_broker(settings)
    if args.queue:
        if args.queue not in ops.queue_names():
            raise CliError(f"--queue: no queue {args.queue} (queues: {', '.join(ops.queue_names())})")
        if not ops.requeue_dead_letter(broker, status, args.queue, args.target):
            raise NotFound(f"no dead letter {args.target} on {args.queue} (requeued or deleted already?)")
        print(f"requeued {args.target} on {args.queue}")
        return 0
    if ops.retry_job(broker, status, args.target):
        print(f"job {args.target}: requeued")
        return 0
    state = status.state_of(args.target)
    if state is None:
        raise NotFound(f"no job {args.target}")
    raise CliError(f"job {args.target} is {state}, not failed; nothing to requeue", EXIT_FAILURE)


def add_job_commands(commands: Any) -> None:
    """Register these commands on the ``framequeue`` parser's subparsers."""
    jobs = commands.add_parser("jobs", help="list jobs, newest first (filter, search, page with --cursor)")
    jobs.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    jobs.add_argument("--kind", choices=["image", "video"], help="only jobs of this kind")
    jobs.add_argument("--stage", choices=list(STAGES), help="only unfinished jobs now at this stage")
    jobs.add_argument("--batch", metavar="BATCH_ID", help="only the jobs of this batch")
    jobs.add_argument("--search", metavar="TEXT", help="only jobs whose id or prompt contains TEXT (any case)")
    jobs.add_argument("--limit", type=_positive, default=20, help="jobs per page (default 20)")
    jobs.add_argument("--cursor", help="start after the page that printed this cursor ('more: --cursor ...')")
    jobs.add_argument("--json", action="store_true", help="print JSON (jobs and next_cursor) instead of a table")
    jobs.set_defaults(handler=cmd_jobs)

    cancel = commands.add_parser("cancel", help="cancel a job that has not finished")
    cancel.add_argument("job_id", help="the job to cancel")
    cancel.set_defaults(handler=cmd_cancel)

    requeue = commands.add_parser("requeue", help="run a failed job again, or put a dead-lettered message back")
    requeue.add_argument("target", help="a failed job's id; with --queue, a dead letter's broker id")
    requeue.add_argument("--queue", help="the queue whose dead letter TARGET is (see the dashboard's Failed page)")
    requeue.set_defaults(handler=cmd_requeue)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
