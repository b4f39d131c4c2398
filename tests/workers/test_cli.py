"""The framequeue command, run as a user would, against the session's workers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from tests.conftest import settings_env
from tests.servers import REPO_ROOT
from workers.jobs.record import JobStatusStore

pytestmark = pytest.mark.usefixtures("workers")


def framequeue(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=settings_env(settings), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=300,
    )


def test_submit_wait_follows_a_job_to_its_result_and_status_reads_it_back(settings) -> None:
    submitted = framequeue(settings, "submit", "a heron in the reeds", "--kind", "image", "--width", "64",
                           "--height", "64", "--wait")

    assert submitted.returncode == 0, submitted.stderr
    job_id = re.search(r"job ([0-9a-f]{32}): queued", submitted.stdout).group(1)  # type: ignore[union-attr]
    assert "state: succeeded" in submitted.stdout
    assert re.search(rf"result: {re.escape(settings.s3_endpoint_url)}/\S+Signature", submitted.stdout)
    status = framequeue(settings, "status", job_id, "--json")
    record = json.loads(status.stdout)
    assert status.returncode == 0 and record["state"] == "succeeded" and record["spec"]["width"] == 64


def test_submit_refuses_an_invalid_job_with_the_reason(settings) -> None:
    submitted = framequeue(settings, "submit", "a heron", "--width", "100")

    assert submitted.returncode == 2
    assert "width: Value error, must be a multiple of 8" in submitted.stderr


def test_submit_refuses_an_obfuscated_unsafe_prompt_and_records_why(settings) -> None:
    submitted = framequeue(settings, "submit", "a n.u.d.e person, gore, beheading", "--kind", "image")

    assert submitted.returncode == 1, submitted.stderr
    found = re.search(r"job ([0-9a-f]{32}): blocked \(blocked by the prompt check: (\w+)", submitted.stdout)
    assert found is not None, submitted.stdout
    record = json.loads(framequeue(settings, "status", found.group(1), "--json").stdout)
    assert record["state"] == "blocked" and record["blocked_check"] == "prompt"
    assert record["blocked_category"] == found.group(2) and record["blocked_score"] > 0


def test_status_of_an_unknown_job_fails(settings) -> None:
    assert framequeue(settings, "status", "no-such-job").returncode == 1


def test_submit_no_cache_asks_for_every_stage_to_be_computed(settings) -> None:
    job_id = f"no-cache-{uuid.uuid4().hex[:8]}"
    submitted = framequeue(settings.model_copy(update={"namespace": "cli-no-cache"}), "submit", "a heron again",
                           "--kind", "image", "--width", "64", "--height", "64", "--id", job_id, "--no-cache")

    assert submitted.returncode == 0, submitted.stderr
    record = JobStatusStore.from_settings(settings.model_copy(update={"namespace": "cli-no-cache"})).get(job_id)
    assert record is not None and record.spec["cache"] is False


def test_submit_model_names_a_stages_catalog_model_and_refuses_a_bad_one(settings) -> None:
    chosen = settings.model_copy(update={"namespace": f"cli-model-{uuid.uuid4().hex[:8]}"})
    submitted = framequeue(chosen, "submit", "a heron", "--kind", "image", "--width", "64", "--height", "64",
                           "--id", "chosen-model", "--model", "image=tiny-sd-alt")
    unknown = framequeue(chosen, "submit", "a heron", "--model", "image=nope")
    shapeless = framequeue(chosen, "submit", "a heron", "--model", "tiny-sd-alt")

    assert submitted.returncode == 0, submitted.stderr
    record = JobStatusStore.from_settings(chosen).get("chosen-model")
    assert record is not None and record.spec["models"] == {"image": "tiny-sd-alt"}
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2, "framequeue: models.image: no model 'nope' in the catalog (models of image: tiny-sd, tiny-sd-alt)")
    assert shapeless.returncode == 2 and "--model takes STAGE=MODEL" in shapeless.stderr
