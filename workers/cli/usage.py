"""``framequeue usage``: what each tenant used and cost, by stage and model, over a range of UTC days.

The same report as ``GET /v1/usage`` (``workers.ops.usage``): a table with each tenant's total, or
``--json``, or ``--csv`` (the API's CSV, byte for byte).
"""

from __future__ import annotations

import argparse
from typing import Any

from queue_config.settings import Settings
from workers.cli.errors import CliError
from workers.cli.output import print_json, print_table
from workers.jobs.record import JobStatusStore


def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ops.usage import parse_since, usage_report, utc_today

    try:
        since = parse_since(args.since, today=utc_today())
        report = usage_report(JobStatusStore.from_settings(settings).client, settings.namespace, since,
                              tenant=args.tenant)
    except ValueError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json(report.as_dict())
    elif args.csv:
        print(report.csv(), end="")
    else:
        rows: list[list[object]] = []
        for total in report.totals:
            rows += [[row.tenant, row.stage, row.model, row.jobs, f"{row.wall_s:.2f}", f"{row.device_s:.2f}", row.calls,
                      f"{row.cost:.4f}"] for row in report.rows if row.tenant == total.tenant]
            rows.append([total.tenant, "total", "", "", f"{total.wall_s:.2f}", f"{total.device_s:.2f}", total.calls,
                         f"{total.cost:.4f}"])
        print(f"usage from {report.since} to {report.until} (UTC)")
        print_table(["tenant", "stage", "model", "jobs", "wall s", "device s", "calls", "cost"], rows,
                    empty="nothing used in these days")
    return 0


def add_usage_command(commands: Any) -> None:
    """Register ``usage`` on the ``framequeue`` parser's subparsers."""
    usage = commands.add_parser("usage", help="show what each tenant used and cost, by stage and model")
    usage.add_argument("--since", default="7d", help="first UTC day: YYYY-MM-DD, 'today', or Nd for the last N "
                                                     "days, today included (default 7d)")
    usage.add_argument("--tenant", help="only this tenant (the operator's own jobs are 'operator')")
    shown = usage.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    shown.add_argument("--csv", action="store_true", help="print the rows as CSV (what GET /v1/usage?format=csv "
                                                          "sends)")
    usage.set_defaults(handler=cmd_usage)
