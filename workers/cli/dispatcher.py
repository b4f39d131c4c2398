"""``framequeue dispatcher``: moves tenants' jobs from their pending lists onto the queues by fair share."""

from __future__ import annotations

import argparse
from typing import Any

from queue_config.settings import Settings
from workers.cli.output import print_table
from workers.jobs.record import JobStatusStore


def cmd_dispatcher(args: argparse.Namespace, settings: Settings) -> int:
    """Run the dispatcher until interrupted (one process acts at a time), or show the pending lists."""
    import logging

    from workers.cli.services import stop_on_signals
    from workers.jobs.fair_share import FairShareDispatcher, pending_depths, tenants_may_start, weights_from_tenants

    status = JobStatusStore.from_settings(settings)
    if args.pending:
        depths = pending_depths(status.client, status.namespace)
        print_table(["queue", "tenant", "pending"],
                    [[queue, tenant, str(depth)] for (queue, tenant), depth in sorted(depths.items())])
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    dispatcher = FairShareDispatcher(status, weights_from_tenants(status.client, status.namespace),
                                     window=settings.fair_share_window,
                                     may_start=tenants_may_start(status.client, status.namespace, status.active_key))
    print(f"dispatcher: up to {dispatcher.window} unfinished tenant jobs per first-stage queue", flush=True)
    dispatcher.run_forever(stop_on_signals())
    return 0


def add_dispatcher_command(commands: Any) -> None:
    """Register ``dispatcher`` on the ``framequeue`` parser's subparsers."""
    dispatcher = commands.add_parser("dispatcher", help="move tenants' jobs onto the queues by weighted fair share")
    dispatcher.add_argument("--pending", action="store_true", help="list the jobs waiting per queue and tenant, "
                            "and exit")
    dispatcher.set_defaults(handler=cmd_dispatcher)
