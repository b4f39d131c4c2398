"""``framequeue workers``: every registered worker process, what it serves and runs, stale ones marked.

Reads the worker registry (``workers.ops.workers``) that each worker process keeps for itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from queue_config.settings import Settings
from queue_config.stages import STAGES
from workers.cli.output import clipped, print_json, print_table, when
from workers.jobs.record import JobStatusStore

#: Widest a cell of running jobs gets in the table (the JSON has them whole).
RUNNING_CELL_CHARS = 60


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ops.workers import list_workers

    entries = list_workers(JobStatusStore.from_settings(settings).client, settings.namespace)
    entries = [entry for entry in entries if (not args.stage or args.stage in entry.stages)
               and not (args.live and entry.stale)]
    if args.json:
        print_json([entry.as_dict() for entry in entries])
        return 0
    print_table(
        ["host", "pid", "stages", "models", "threads", "running", "started", "version", "last seen", "state"],
        ([entry.host, entry.pid, ",".join(entry.stages), " ".join(f"{k}={v}" for k, v in entry.models.items()),
          entry.threads, clipped(", ".join(f"{job.job_id} ({job.stage})" for job in entry.current_jobs) or "idle",
                                 RUNNING_CELL_CHARS),
          when(entry.started_at), entry.version, f"{entry.age_s:.0f} s ago", "stale" if entry.stale else "alive"]
         for entry in entries),
        empty="no worker has registered",
    )
    return 0


def add_fleet_commands(commands: Any) -> None:
    """Register ``workers`` on the ``framequeue`` parser's subparsers."""
    workers = commands.add_parser(
        "workers", help="list the worker processes: host, pid, stages, models, running jobs; stale ones marked",
        description="Every worker process that registered itself, freshest first. A worker silent for longer than "
                    "the heartbeat timeout is 'stale' (presumed dead) until its entry expires; one stopped cleanly "
                    "leaves the list at once.",
    )
    workers.add_argument("--stage", choices=list(STAGES), help="only the workers that serve this stage")
    workers.add_argument("--live", action="store_true", help="leave out stale workers")
    workers.add_argument("--json", action="store_true",
                         help="print the list as JSON (every field, running jobs whole) instead of a table")
    workers.set_defaults(handler=cmd_workers)
