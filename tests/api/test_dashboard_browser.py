"""The operator's console in a real browser: the overview's stage rows, job search with pagination,
and a failed job's traceback and Retry (the job then runs again and succeeds)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from queue_config.settings import Settings
from tests.api.test_dashboard import BROWSER_DIR, TOKEN, browser_ready
from tests.api.test_dashboard_actions import PROVIDER_KEY, finished, flaky_worker, upload_job
from tests.api.test_job_search import recorded
from tests.api.test_jobs_api import api_server
from tests.queues import IMAGE_BATCH_QUEUE, IMAGE_QUEUE

#: Jobs of the search: more than one page of ``PAGE_SIZE``.
SEARCH_JOBS, PAGE_SIZE = 25, 20


@pytest.mark.timeout(300)
def test_an_operator_reads_the_stage_rows_pages_through_a_search_and_retries_a_failed_job(
    settings: Settings, tmp_path: Path, artifacts_dir: Path
) -> None:
    if reason := browser_ready():
        pytest.skip(reason)
    with flaky_worker(settings, tmp_path, failures=2) as (ns, upload):
        failed = upload_job(ns)
        assert finished(ns.status, failed.id) == "failed"
        kites = recorded(ns, SEARCH_JOBS, "a paper kite")
        recorded(ns, 3, "a heron")
        for _ in range(2):  # no worker here runs the image stage: these stay ready
            ns.enqueue(IMAGE_QUEUE, {"job": {"id": "job-ready"}})
        config = {"token": TOKEN, "failedJobId": failed.id, "searchText": "KITE", "pageSize": PAGE_SIZE,
                  "artifactsDir": str(artifacts_dir)}
        with api_server(ns.settings) as url:
            run = subprocess.run(["node", "operator.mjs", json.dumps({**config, "baseUrl": url})], cwd=BROWSER_DIR,
                                 capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    image, upload_row = seen["stageRows"][IMAGE_QUEUE], seen["stageRows"]["upload"]
    assert image["ready"] == "2" and image["dead"] == "0" and image["oldest"] != "—"
    assert upload_row["dead"] == "1" and upload_row["failed"] == "1" and upload_row["ready"] == "0"
    assert set(seen["stageRows"]) >= {IMAGE_BATCH_QUEUE, "upload_batch"}
    assert len(seen["firstPage"]) == PAGE_SIZE and len(seen["secondPage"]) == SEARCH_JOBS - PAGE_SIZE
    assert set(seen["firstPage"]).isdisjoint(seen["secondPage"])
    assert set(seen["firstPage"]) | set(seen["secondPage"]) == set(kites) and seen["nextOnSecond"] == 0
    assert seen["stateBefore"] == "failed" and "RuntimeError: provider refused key=[redacted]" in seen["traceback"]
    assert PROVIDER_KEY not in seen["traceback"] and "Traceback (most recent call last)" in seen["traceback"]
    assert seen["flash"] == "The job is queued again." and seen["stateAfter"] == "succeeded"
    assert seen["retryButtons"] == 0 and upload.calls == 3
