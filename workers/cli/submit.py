"""``framequeue submit``: one job from the command line, optionally followed to its result.

While ``--wait`` follows a job that has not started, it looks for a live worker serving the
job's first stage (the worker registry, ``workers/ops/workers.py``) and, when there is none after
``HINT_AFTER_S``, says once how to start one, rather than leaving the operator to wait in silence.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from queue_config.catalog import ModelRefused, catalog_of
from queue_config.jobs import JobSpec
from queue_config.settings import Settings
from queue_config.stages import MODEL_SEPARATOR
from workers.broker import build_broker
from workers.cli.errors import CliError
from workers.jobs.messages import describe_validation_error
from workers.jobs.position import newest_message
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job
from workers.ops.workers import WorkerEntry, list_workers
from workers.outages import OUTAGE_ERRORS

#: How often ``submit --wait`` reads the job's record.
POLL_INTERVAL_S = 0.25
#: How long a job may sit unstarted before ``--wait`` looks for a worker that could start it.
HINT_AFTER_S = 3.0


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    fields = {
        "prompt": args.prompt, "kind": args.kind, "seed": args.seed, "width": args.width, "height": args.height,
        "steps": args.steps, "num_frames": args.frames, "fps": args.fps, "enhance_prompt": not args.no_enhance,
        "cache": not args.no_cache,
        "frames_backend": args.frames_backend, **({"id": args.id} if args.id else {}),
        "models": chosen_models(args.model) or None,
    }
    try:
        spec = catalog_of(settings).admit(JobSpec(**{k: v for k, v in fields.items() if v is not None}))
    except ValidationError as error:
        raise CliError(describe_validation_error(error)) from None
    except ModelRefused as refused:
        raise CliError(str(refused)) from None
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

    started = time.monotonic()
    hinted = False
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} stages"),
                  TimeElapsedColumn(), transient=False, console=_stderr_console()) as progress:
        task = progress.add_task("queued", total=None)
        while time.monotonic() < started + timeout_s:
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
                if not hinted and record.state == "queued" and time.monotonic() - started > HINT_AFTER_S:
                    hinted = True
                    if hint := no_worker_hint(status, record.id, record.stage or (record.stages or [""])[0]):
                        progress.console.print(hint, markup=False, highlight=False, soft_wrap=True)
            time.sleep(POLL_INTERVAL_S)
    return status.get(job_id)


def no_worker_hint(status: JobStatusStore, job_id: str, stage: str) -> str:
    """What to start when no live worker serves the queued job's next message; "" when one does."""
    newest = newest_message(status, job_id)
    live = [entry for entry in list_workers(status.client, status.namespace) if not entry.stale]
    return missing_worker_hint(stage, newest[0] if newest else "", live)


def missing_worker_hint(stage: str, queue: str, live: list[WorkerEntry]) -> str:
    """The hint when none of the ``live`` workers consumes ``queue`` (or, not knowing the queue, serves
    ``stage``): a worker may serve a stage and not the model the job's message waits for."""
    if not stage or any(queue in entry.queues if queue else stage in entry.stages for entry in live):
        return ""
    model = queue.partition(MODEL_SEPARATOR)[2]
    if not model:
        return (f"hint: no live worker serves the {stage} stage, so this job waits; start one with "
                f"`framequeue worker --stages {stage}` (or run everything with `framequeue dev`)")
    return (f"hint: no live worker serves the {stage} stage with model {model}, so this job waits; start one with "
            f"`framequeue worker --stages {stage} --models {model}` (or run everything with `framequeue dev`)")


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


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def chosen_models(choices: list[str] | None) -> dict[str, str]:
    """``--model STAGE=MODEL`` options as a job's ``models``."""
    models = {}
    for choice in choices or []:
        stage, equals, model = choice.partition("=")
        if not equals or not stage or not model:
            raise CliError(f"--model takes STAGE=MODEL (e.g. image=sd-turbo), not {choice!r}")
        models[stage.strip()] = model.strip()
    return models


def add_submit_command(commands: Any) -> None:
    """Register ``submit`` on the ``framequeue`` parser's subparsers."""
    submit = commands.add_parser("submit", help="submit an image or video job")
    submit.add_argument("prompt", help="what to generate")
    submit.add_argument("--kind", choices=["image", "video"], default="image", help="image (default) or video")
    submit.add_argument("--id", help="job id (idempotent: the same id is enqueued once)")
    submit.add_argument("--seed", type=int, help="random seed (default 0)")
    submit.add_argument("--width", type=int, help="width in pixels, a multiple of 8 (default 256)")
    submit.add_argument("--height", type=int, help="height in pixels, a multiple of 8 (default 256)")
    submit.add_argument("--steps", type=int, help="denoising steps (default 4)")
    submit.add_argument("--frames", type=int, help="video: number of frames (default 16)")
    submit.add_argument("--fps", type=int, help="video: frames per second (default 8)")
    submit.add_argument("--frames-backend", choices=["camera", "img2img"],
                        help="video: camera motion over one image, or img2img per frame (default: the setting)")
    submit.add_argument("--model", action="append", metavar="STAGE=MODEL",
                        help="the catalog model of a stage (repeatable): image=sd-turbo, frames=svd; "
                             "see framequeue models")
    submit.add_argument("--no-enhance", action="store_true", help="skip prompt enhancement")
    submit.add_argument("--no-cache", action="store_true",
                        help="compute every stage even when an earlier job had the same inputs")
    submit.add_argument("--wait", action="store_true", help="follow the job until it finishes")
    submit.add_argument("--timeout", type=float, default=600.0, help="how long --wait waits (s)")
    submit.set_defaults(handler=cmd_submit)
