"""The ``framequeue`` command: submit jobs, read their status, run workers."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import redis
from pydantic import ValidationError

from queue_config.broker import build_broker, resolve_redis_url
from queue_config.embedded_redis import stop_embedded_redis
from queue_config.jobs import JobSpec
from queue_config.settings import Settings, get_settings
from queue_config.stages import CPU_STAGES, GPU_STAGES, STAGES
from workers.job_status import JobRecord, JobStatusStore
from workers.messages import describe_validation_error
from workers.submit import submit_job

#: How often ``submit --wait`` reads the job's record.
POLL_INTERVAL_S = 0.25


def open_status(settings: Settings) -> JobStatusStore:
    client = redis.Redis.from_url(resolve_redis_url(settings), decode_responses=True)
    return JobStatusStore(client, settings.namespace)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    fields = {
        "prompt": args.prompt, "kind": args.kind, "seed": args.seed, "width": args.width, "height": args.height,
        "steps": args.steps, "num_frames": args.frames, "fps": args.fps, "enhance_prompt": not args.no_enhance,
        "frames_backend": args.frames_backend, **({"id": args.id} if args.id else {}),
    }
    try:
        spec = JobSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        print(describe_validation_error(error), file=sys.stderr)
        return 2
    status = open_status(settings)
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
            record = status.get(job_id)
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
    record = open_status(settings).get(args.job_id)
    if args.json:
        print(json.dumps(record.as_dict() if record else None, indent=2))
    else:
        print_outcome(record)
    return 0 if record is not None else 1


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    stages = [s for s in args.stages.split(",") if s] if args.stages else list(STAGES)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        print(f"unknown stages: {', '.join(unknown)} (known: {', '.join(STAGES)})", file=sys.stderr)
        return 2
    resolve_redis_url(settings)  # exported, so every dramatiq process shares the server
    os.environ["dramatiq_worker_timeout"] = str(settings.queue_poll_max_ms)  # noqa: SIM112 - dramatiq reads it so
    command = [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(args.processes),
               "--threads", str(args.threads), "--queues", *(q for s in stages for q in STAGES[s].queue_names())]
    os.execv(sys.executable, command)
    return 0  # not reached


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Each key pool's health, by key fingerprint (keys themselves are never stored)."""
    from workers.keys import key_health

    rows = key_health(open_status(settings).client, settings.namespace)
    if not rows:
        print("no key has been used yet")
    print(f"{'provider':<12} {'key':<14} {'state':<20} {'requests':>8} {'ok':>6} {'429':>5} {'5xx':>5}  reason")
    for row in rows:
        print(f"{row.provider:<12} {row.fingerprint:<14} {row.state:<20} {row.requests:>8} {row.successes:>6} "
              f"{row.rate_limited:>5} {row.errors:>5}  {row.disabled_reason}")
    return 0


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Overnight batches: submit a file, follow it, retry its failures, cancel it."""
    from rich.progress import Progress

    from storage import open_store
    from workers import batches
    from workers.batch_files import BatchFileError, batch_id_from_name, derive_batch_id, parse_batch

    status = open_status(settings)
    if args.action == "submit":
        data = Path(args.target).read_bytes()
        batch_id = batch_id_from_name(args.name) if args.name else derive_batch_id(data)
        try:
            lines = parse_batch(data, batch_id=batch_id, filename=args.target)
        except BatchFileError as error:
            print(f"{args.target}: {error}", file=sys.stderr)
            return 2
        bad = [line for line in lines if line.error]
        for line in bad:
            print(f"{args.target}:{line.line_number}: {line.error}", file=sys.stderr)
        if bad and args.strict:
            print(f"{len(bad)} bad line(s); nothing submitted (--strict)", file=sys.stderr)
            return 2
        with Progress() as progress:
            task = progress.add_task(f"batch {batch_id}", total=len(lines) - len(bad))
            summary = batches.submit_lines(status, build_broker(settings), batch_id, args.name or args.target,
                                           lines, progress=lambda n: progress.advance(task, n),
                                           webhook_url=args.webhook)
        print(json.dumps({"batch_id": batch_id, "rejected": len(bad), **summary}))
        return 0
    if args.action == "status":
        print(json.dumps(batches.batch_progress(status, args.target), indent=2))
    elif args.action == "retry-failed":
        print(json.dumps({"retried": batches.retry_failed(status, build_broker(settings), args.target)}))
    elif args.action == "cancel":
        store = open_store(settings)
        cancelled = batches.cancel_batch(status, build_broker(settings), args.target, store=store,
                                         url_ttl_s=settings.presigned_url_ttl_s)
        print(json.dumps({"cancelled": cancelled}))
    return 0


def cmd_intake(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the Redis Stream front door until interrupted."""
    import logging

    from workers.intake import Intake

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    status = open_status(settings)
    intake = Intake(status.client, build_broker(settings), status, settings.namespace)
    print(f"intake: reading {intake.stream_key}", flush=True)
    intake.run()
    return 0


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver job events to the webhooks jobs name, until interrupted."""
    from workers.webhooks import WebhookSender

    sender = WebhookSender(open_status(settings), settings.webhook_secret,
                           max_attempts=settings.webhook_max_attempts, first_retry_s=settings.webhook_first_retry_s)
    print(f"webhooks: following {sender.status.events_key}", flush=True)
    sender.run()
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from workers.api import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "stop":
        print("stopped" if stop_embedded_redis(settings.data_dir) else "not running")
    else:
        print(resolve_redis_url(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framequeue", description=__doc__)
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

    keys = commands.add_parser("keys", help="show the health of every provider's API keys")
    keys.set_defaults(handler=cmd_keys)

    batch = commands.add_parser("batch", help="overnight batches: submit FILE, or status|retry-failed|cancel ID")
    batch.add_argument("action", choices=["submit", "status", "retry-failed", "cancel"])
    batch.add_argument("target", help="a JSONL or CSV file (submit), else a batch id")
    batch.add_argument("--name", help="batch id to use instead of one derived from the file")
    batch.add_argument("--strict", action="store_true", help="submit nothing if any line is bad")
    batch.add_argument("--webhook", help="URL that receives the batch's own events (e.g. batch_completed)")
    batch.set_defaults(handler=cmd_batch)

    intake = commands.add_parser("intake", help="serve the Redis Stream front door for other systems")
    intake.set_defaults(handler=cmd_intake)

    webhooks = commands.add_parser("webhooks", help="deliver job events to the webhooks jobs name")
    webhooks.set_defaults(handler=cmd_webhooks)

    api = commands.add_parser("api", help="serve the HTTP job API, the dashboard and /metrics")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(handler=cmd_api)

    embedded = commands.add_parser("redis", help="the embedded Redis used when REDIS_URL is unset")
    embedded.add_argument("action", choices=["url", "stop"])
    embedded.set_defaults(handler=cmd_redis)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args, get_settings()))


if __name__ == "__main__":
    sys.exit(main())
