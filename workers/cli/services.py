"""The ``framequeue`` commands that run or operate services: keys, batch, intake, reconciler, webhooks, api."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from workers.broker import build_broker
from workers.cli.errors import EXIT_CONFIG, CliError, NotFound
from workers.cli.output import print_json, print_table
from workers.jobs.record import JobStatusStore

if TYPE_CHECKING:
    from workers.batches.files import BatchLine


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Overnight batches: submit a file, follow it, retry its failures, cancel it."""
    from rich.progress import Progress

    from storage import open_store
    from workers import batches

    status = JobStatusStore.from_settings(settings)
    if args.action == "submit":
        batch_id, lines = read_batch_file(args.target, args.name, strict=args.strict)
        bad = [line for line in lines if line.error]
        with Progress() as progress:
            task = progress.add_task(f"batch {batch_id}", total=len(lines) - len(bad))
            summary = batches.submit_lines(status, build_broker(settings), batch_id, args.name or args.target,
                                           lines, progress=lambda n: progress.advance(task, n),
                                           webhook_url=args.webhook, store=open_store(settings),
                                           url_ttl_s=settings.presigned_url_ttl_s)
        print(json.dumps({"batch_id": batch_id, "rejected": len(bad), **summary}))
        return 0
    found = batches.batch_progress(status, args.target)
    if found is None:
        raise NotFound(f"no batch {args.target}")
    if args.action == "status":
        if args.json:
            print_json(found)
        else:
            print_table(["batch", found["batch_id"]], [
                (name, ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value)
                for name, value in found.items() if name != "batch_id"])
    elif args.action == "retry-failed":
        print(json.dumps({"retried": batches.retry_failed(status, build_broker(settings), args.target)}))
    elif args.action == "cancel":
        store = open_store(settings)
        cancelled = batches.cancel_batch(status, build_broker(settings), args.target, store=store,
                                         url_ttl_s=settings.presigned_url_ttl_s)
        print(json.dumps({"cancelled": cancelled}))
    return 0


def read_batch_file(path: str, name: str | None, *, strict: bool) -> tuple[str, list[BatchLine]]:
    """A batch file's id and lines, its bad lines reported on stderr one by one (with ``strict``, the first
    and how many, in the CliError). Raises CliError when nothing of it can be submitted."""
    from workers.batches.files import BatchFileError, batch_id_from_name, derive_batch_id, parse_batch

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        batch_id = batch_id_from_name(name) if name else derive_batch_id(data)
        lines = parse_batch(data, batch_id=batch_id, filename=path)
    except BatchFileError as error:
        raise CliError(f"{path}:{error.line_number}: {error.reason}") from None
    except ValueError as error:  # the name
        raise CliError(f"--name: {error}") from None
    bad = [line for line in lines if line.error]
    if bad and strict:
        numbers = ", ".join(str(line.line_number) for line in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise CliError(f"{path}:{bad[0].line_number}: {bad[0].error} ({len(bad)} bad line(s): {numbers}); "
                       "nothing submitted (--strict)")
    for line in bad:
        print(f"{path}:{line.line_number}: {line.error}", file=sys.stderr)
    if len(bad) == len(lines):
        raise CliError(f"{path}: no line is a valid job; nothing submitted")
    return batch_id, lines


def cmd_intake(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the Redis Stream front door until interrupted."""
    import logging

    from workers.doors.intake import Intake

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    status = JobStatusStore.from_settings(settings)
    intake = Intake(status.client, build_broker(settings), status, settings.namespace,
                    claim_idle_ms=settings.intake_claim_idle_ms, catalog=catalog_of(settings))
    print(f"intake: reading {intake.stream_key} and every enabled tenant's {intake.stream_key}:<tenant>", flush=True)
    intake.run()
    return 0


def cmd_reconciler(args: argparse.Namespace, settings: Settings) -> int:
    """Repair jobs that lost their message, until interrupted (one process acts at a time)."""
    import logging

    from workers.jobs.reconciler import Reconciler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    reconciler = Reconciler(
        JobStatusStore.from_settings(settings), build_broker(settings),
        stale_after_s=settings.reconcile_after_s, max_repairs=settings.reconcile_max_repairs,
        catalog=catalog_of(settings),
    )
    stop = stop_on_signals()
    print(f"reconciler: a pass every {settings.reconcile_interval_s:g} s, "
          f"jobs still for {settings.reconcile_after_s:g} s", flush=True)
    reconciler.run_forever(stop, settings.reconcile_interval_s)
    return 0


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver job events to the webhooks jobs name, until interrupted.

    Without a secret nothing can be signed: it says so in one line and idles until stopped, so a
    Procfile runner (``framequeue dev``, honcho) keeps the other services up.
    """
    from workers.doors.webhook_policy import WebhookPolicy
    from workers.doors.webhook_signing import signing_key
    from workers.doors.webhooks import WebhookSender

    if not settings.webhook_secret:
        print("webhooks: FRAMEQUEUE_WEBHOOK_SECRET is not set, so no webhook is sent; idling until stopped",
              flush=True)
        idle_until_stopped()
        return 0
    try:
        signing_key(settings.webhook_secret)
    except ValueError as error:
        raise CliError(str(error), EXIT_CONFIG) from None
    sender = WebhookSender(JobStatusStore.from_settings(settings), settings.webhook_secret,
                           max_attempts=settings.webhook_max_attempts, first_retry_s=settings.webhook_first_retry_s,
                           timeout_s=settings.webhook_timeout_s, policy=WebhookPolicy.from_settings(settings))
    print(f"webhooks: following {sender.status.events_key}", flush=True)
    sender.run()
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from workers.api import create_app

    catalog_of(settings)  # a bad catalog is one line and exit 78 now, not a 500 at the first submission
    if not settings.api_token:
        print("api: FRAMEQUEUE_API_TOKEN is not set: every request to /v1, /metrics and the dashboard is refused "
              "(set one, or run framequeue dev, which makes one)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the way a service is told to stop."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop


def idle_until_stopped() -> None:
    """Do nothing until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    while not stop.wait(3600):
        pass


def _webhook_url(url: str) -> str:
    """``--webhook``, checked by ``JobSpec`` itself, as the API checks a job's ``webhook_url``."""
    from pydantic import ValidationError

    from queue_config.jobs import JobSpec

    try:
        JobSpec(prompt="a --webhook check", webhook_url=url)
    except ValidationError as invalid:
        reasons = [error["msg"].removeprefix("Value error, ")
                   for error in invalid.errors(include_input=False, include_url=False)
                   if error["loc"] == ("webhook_url",)]
        if reasons:
            raise argparse.ArgumentTypeError("; ".join(reasons)) from None
    return url


def add_service_commands(commands: Any) -> None:
    """Register these commands on the ``framequeue`` parser's subparsers."""
    batch = commands.add_parser("batch", help="overnight batches: submit FILE, or status|retry-failed|cancel ID")
    batch.add_argument("action", choices=["submit", "status", "retry-failed", "cancel"],
                       help="submit a file; show a batch's progress; run its failed jobs again; cancel it")
    batch.add_argument("target", help="a JSONL or CSV file (submit), else a batch id")
    batch.add_argument("--name", help="batch id to use instead of one derived from the file")
    batch.add_argument("--strict", action="store_true", help="submit nothing if any line is bad")
    batch.add_argument("--webhook", type=_webhook_url,
                       help="URL that receives the batch's own events (e.g. batch_completed)")
    batch.add_argument("--json", action="store_true", help="status: print JSON instead of a table")
    batch.set_defaults(handler=cmd_batch)

    intake = commands.add_parser("intake", help="serve the Redis Stream front door for other systems")
    intake.set_defaults(handler=cmd_intake)

    reconciler = commands.add_parser("reconciler", help="send on again the jobs whose message was lost")
    reconciler.set_defaults(handler=cmd_reconciler)

    webhooks = commands.add_parser("webhooks", help="deliver job events to the webhooks jobs name")
    webhooks.set_defaults(handler=cmd_webhooks)

    api = commands.add_parser("api", help="serve the HTTP job API, the dashboard and /metrics")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    api.set_defaults(handler=cmd_api)

