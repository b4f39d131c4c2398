"""The ``framequeue`` command: submit jobs, read their status, run workers.

A user's mistake, an unknown id or Redis out of reach is one line on stderr and an exit code
(``workers/cli/errors.py``: 1 failed, 2 a usage or input error), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from queue_config.jobs import JobSpec
from queue_config.settings import Settings, get_settings
from queue_config.stages import CPU_STAGES, GPU_STAGES, STAGES
from workers.broker import build_broker
from workers.cli.errors import EXIT_CODES_HELP, CliError, NotFound, OneLineParser, run_command
from workers.cli.services import add_service_commands
from workers.embedded_redis import resolve_redis_url, stop_embedded_redis
from workers.jobs.messages import describe_validation_error
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job
from workers.outages import OUTAGE_ERRORS

#: How often ``submit --wait`` reads the job's record.
POLL_INTERVAL_S = 0.25


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    fields = {
        "prompt": args.prompt, "kind": args.kind, "seed": args.seed, "width": args.width, "height": args.height,
        "steps": args.steps, "num_frames": args.frames, "fps": args.fps, "enhance_prompt": not args.no_enhance,
        "frames_backend": args.frames_backend, **({"id": args.id} if args.id else {}),
    }
    try:
        spec = JobSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        raise CliError(describe_validation_error(error)) from None
    status = JobStatusStore.from_settings(settings)
    submission = submit_job(build_broker(settings), status, spec)
    print(f"job {submission.job_id}: {submission.state}" + (f" ({submission.reason})" if submission.reason else ""))
    if not args.wait or submission.state == "blocked":
        return 0 if submission.state != "blocked" else 1
    record = wait_with_progress(status, spec.id, timeout_s=args.timeout)
    print_outcome(record)
    return 0 if record is not None and record.state == "succeeded" else 1


def wait_with_progress(status: JobStatusStore, job_id: str, timeout_s: float) -> JobRecord | None:
    """Follow a job until it finishes, drawing one progress bar over its stages."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} stages"),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task("queued", total=None)
        while time.monotonic() < deadline:
            try:
                record = status.get(job_id)
            except OUTAGE_ERRORS:
                progress.update(task, description="waiting for Redis to come back")
                time.sleep(POLL_INTERVAL_S)
                continue
            if record is not None:
                progress.update(task, total=len(record.stages), completed=len(record.timings_s),
                                description=f"{record.state} {record.stage}".strip())
                if record.finished:
                    return record
            time.sleep(POLL_INTERVAL_S)
    return status.get(job_id)


def print_outcome(record: JobRecord | None) -> None:
    if record is None:
        print("job not found", file=sys.stderr)
        return
    print(f"state: {record.state}")
    for stage in record.stages:
        if stage in record.timings_s:
            print(f"  {stage:<15} {record.timings_s[stage]:7.2f} s  (attempts: {record.attempts.get(stage, 0)})")
    if record.error:
        print(f"error: {record.error}")
    if record.result_url:
        url = urlparse(record.result_url)
        print(f"result: {unquote(url.path) if url.scheme == 'file' else record.result_url}")


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
    stages = [s for s in args.stages.split(",") if s] if args.stages else list(STAGES)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise CliError(f"unknown stages: {', '.join(unknown)} (known: {', '.join(STAGES)})")
    resolve_redis_url(settings)  # exported, so every dramatiq process shares the server
    os.environ["dramatiq_worker_timeout"] = str(settings.queue_poll_max_ms)  # noqa: SIM112 - dramatiq reads it so
    command = [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(args.processes),
               "--threads", str(args.threads), "--queues", *(q for s in stages for q in STAGES[s].queue_names())]
    os.execv(sys.executable, command)
    return 0  # not reached


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "stop":
        print("stopped" if stop_embedded_redis(settings.data_dir) else "not running")
    else:
        print(resolve_redis_url(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="framequeue", description=__doc__.partition("\n")[0], epilog=EXIT_CODES_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="submit an image or video job")
    submit.add_argument("prompt")
    submit.add_argument("--kind", choices=["image", "video"], default="image")
    submit.add_argument("--id", help="job id (idempotent: the same id is enqueued once)")
    for name in ("seed", "width", "height", "steps", "frames", "fps"):
        submit.add_argument(f"--{name}", type=int)
    submit.add_argument("--frames-backend", choices=["camera", "img2img"])
    submit.add_argument("--no-enhance", action="store_true", help="skip prompt enhancement")
    submit.add_argument("--wait", action="store_true", help="follow the job until it finishes")
    submit.add_argument("--timeout", type=float, default=600.0, help="how long --wait waits (s)")
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser("status", help="show a job's status")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    worker = commands.add_parser("worker", help="run stage workers (dramatiq)")
    worker.add_argument("--stages", default="", help=f"comma-separated (default all); GPU: {','.join(GPU_STAGES)}; "
                                                     f"CPU: {','.join(CPU_STAGES)}")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=2)
    worker.set_defaults(handler=cmd_worker)

    add_service_commands(commands)

    embedded = commands.add_parser("redis", help="the embedded Redis used when REDIS_URL is unset")
    embedded.add_argument("action", choices=["url", "stop"])
    embedded.set_defaults(handler=cmd_redis)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.handler, args, get_settings())

