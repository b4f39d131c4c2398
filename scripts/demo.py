"""The whole flow on this machine, on embedded defaults: `make demo`.

Starts (or reuses) the embedded Redis, builds the tiny models on first use,
runs one worker command for every stage, submits a video job, follows it,
and prints where the finished mp4 is. Settings come from the environment as
usual, so REDIS_URL or FRAMEQUEUE_S3_ENDPOINT_URL point it at real servers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipelines import resolve_profile  # noqa: E402
from queue_config.jobs import JobKind, JobSpec  # noqa: E402
from queue_config.settings import get_settings  # noqa: E402
from workers.broker import build_broker  # noqa: E402
from workers.cli.submit import print_outcome, wait_with_progress  # noqa: E402
from workers.embedded_redis import resolve_redis_url  # noqa: E402
from workers.jobs.record import JobStatusStore  # noqa: E402
from workers.jobs.submit import submit_job  # noqa: E402
from workers.ops.workers import list_workers  # noqa: E402

#: How long the demo's worker may take to boot (imports, torch) before the demo gives up on it.
WORKER_BOOT_TIMEOUT_S = 300


def main() -> int:
    settings = get_settings()
    print(f"redis:   {resolve_redis_url(settings)}")
    print(f"storage: {settings.s3_endpoint_url or settings.data_dir / 'objects'}")
    started = time.monotonic()
    profile = resolve_profile(settings.model_profile, settings.data_dir / "models")
    elapsed_s = time.monotonic() - started
    print(f"models:  {settings.model_profile} profile ready in {elapsed_s:.1f} s ({profile.image_model})")

    log_path = settings.data_dir / "demo-worker.log"
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--processes", "1", "--threads", "2"],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            status = JobStatusStore.from_settings(settings)
            booted_s = wait_for_a_worker(status, worker)
            if booted_s is None:
                print(f"the demo's worker did not come up; see {log_path}", file=sys.stderr)
                return 1
            print(f"worker:  up in {booted_s:.1f} s (log: {log_path})")
            spec = JobSpec(
                prompt="a lighthouse on a cliff at dusk, waves below", kind=JobKind.video,
                width=256, height=256, num_frames=24, fps=12, seed=42,
            )
            submit_job(build_broker(settings), status, spec)
            print(f"job:     {spec.id}")
            record = wait_with_progress(status, spec.id, timeout_s=600)
        finally:
            worker.terminate()
            worker.wait(60)
    print_outcome(record)
    if record is None or record.state != "succeeded":
        print(f"the demo job did not succeed; see {log_path}", file=sys.stderr)
        return 1
    print("(the embedded Redis keeps running for other framequeue commands: `framequeue redis stop` ends it)")
    return 0


def wait_for_a_worker(status: JobStatusStore, worker: subprocess.Popen[bytes]) -> float | None:
    """Seconds until a live worker has registered, so the job is not left waiting while it boots (and
    ``submit --wait``'s hint does not say that none is running); None if the process died or never did."""
    started = time.monotonic()
    while time.monotonic() - started < WORKER_BOOT_TIMEOUT_S and worker.poll() is None:
        if any(not entry.stale for entry in list_workers(status.client, status.namespace)):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


if __name__ == "__main__":
    sys.exit(main())
