"""The ``framequeue`` command: submit jobs, read their status, run workers.

A user's mistake, an unknown id, a refused setting, Redis out of reach or Ctrl-C is one line on
stderr and an exit code (``workers/cli/errors.py``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pydantic import ValidationError

from queue_config.catalog import Catalog, catalog_of
from queue_config.settings import Settings, get_settings
from queue_config.stages import CPU_STAGES, GPU_STAGES, MODEL_STAGES, STAGES
from workers.cli.dev import add_dev_command
from workers.cli.dispatcher import add_dispatcher_command
from workers.cli.errors import EXIT_CODES_HELP, CliError, NotFound, OneLineParser, run_command
from workers.cli.fleet import add_fleet_commands
from workers.cli.jobs import add_job_commands
from workers.cli.keys import add_keys_command
from workers.cli.models import add_models_command
from workers.cli.services import add_service_commands
from workers.cli.submit import add_submit_command, print_outcome
from workers.cli.tenants import add_tenants_command
from workers.cli.usage import add_usage_command
from workers.embedded_redis import resolve_redis_url, stop_embedded_redis
from workers.jobs.messages import describe_validation_error
from workers.jobs.record import JobStatusStore

#: The top-level help's description (plain text: argparse prints it as it is).
DESCRIPTION = "framequeue: submit image and video jobs, follow them, and run and operate the services that do them."


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    record = JobStatusStore.from_settings(settings).get(args.job_id)
    if record is None:
        raise NotFound(f"no job {args.job_id}")
    if args.json:
        print(json.dumps(record.as_dict(), indent=2))
    else:
        print_outcome(record)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    check_remote_config(settings)
    queues = worker_queues(catalog_of(settings), split(args.stages), split(args.models))
    resolve_redis_url(settings)  # exported, so every dramatiq process shares the server
    os.environ["dramatiq_worker_timeout"] = str(settings.queue_poll_max_ms)  # noqa: SIM112 - dramatiq reads it so
    command = [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(args.processes),
               "--threads", str(args.threads), "--queues", *queues]
    os.execv(sys.executable, command)
    return 0  # not reached


def split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def worker_queues(catalog: Catalog, stages: list[str], models: list[str]) -> list[str]:
    """The queues a worker serves: those of ``stages`` (default all; with ``models``, none but theirs)
    and of ``models``, the catalog models it keeps resident. A model stage of ``stages`` that none of
    ``models`` serves is served with every model of it."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise CliError(f"unknown stages: {', '.join(unknown)} (known: {', '.join(STAGES)})")
    missing = sorted(set(models) - set(catalog.models))
    if missing:
        raise CliError(f"--models: not in the catalog: {', '.join(missing)} (see framequeue models)")
    served = [catalog.models[model] for model in models]
    stages = stages or ([] if models else list(STAGES))
    queues: list[str] = []
    for stage in STAGES:
        if stage not in MODEL_STAGES:
            queues += STAGES[stage].queue_names() if stage in stages else []
            continue
        chosen = [model.id for model in served if model.stage == stage]
        if not chosen and stage in stages:
            chosen = [model.id for model in catalog.of_stage(stage)]
        for model in chosen:
            queues += STAGES[stage].queue_names(model)
    return queues


def check_remote_config(settings: Settings) -> None:
    """Read the remote configuration once here, so a bad file is one line, not a traceback per worker process."""
    import tomllib

    from queue_config.remote import load_remote_config

    try:
        load_remote_config(settings.remote_config)
    except tomllib.TOMLDecodeError as error:
        raise CliError(f"{settings.remote_config}: {error}") from None
    except ValidationError as error:
        reason = describe_validation_error(error).removeprefix("invalid job: ")
        raise CliError(f"{settings.remote_config}: {reason}") from None


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "stop":
        print("stopped" if stop_embedded_redis(settings.data_dir) else "not running")
    else:
        print(resolve_redis_url(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="framequeue", description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_submit_command(commands)
    status = commands.add_parser("status", help="show a job's status")
    status.add_argument("job_id", help="the id submit printed")
    status.add_argument("--json", action="store_true", help="print the whole record as JSON")
    status.set_defaults(handler=cmd_status)
    add_job_commands(commands)

    worker = commands.add_parser("worker", help="run stage workers (dramatiq)")
    worker.add_argument("--stages", default="", help=f"comma-separated (default all); GPU: {','.join(GPU_STAGES)}; "
                                                     f"CPU: {','.join(CPU_STAGES)}")
    worker.add_argument("--models", default="", help="comma-separated catalog models to serve and keep resident "
                                                     "(default: every model of the stages); see framequeue models")
    worker.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    worker.add_argument("--threads", type=int, default=2, help="threads per process (default 2)")
    worker.set_defaults(handler=cmd_worker)

    add_keys_command(commands)
    add_tenants_command(commands)
    add_models_command(commands)
    add_usage_command(commands)
    add_service_commands(commands)
    add_dispatcher_command(commands)
    add_fleet_commands(commands)
    add_dev_command(commands)

    embedded = commands.add_parser("redis", help="the embedded Redis used when REDIS_URL is unset")
    embedded.add_argument("action", choices=["url", "stop"],
                          help="url: print the Redis URL in use (starting the embedded server if needed); "
                               "stop: shut the embedded server down")
    embedded.set_defaults(handler=cmd_redis)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.handler, args, get_settings)

