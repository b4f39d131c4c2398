"""The dashboard's job actions: a failed job's scrubbed traceback and Retry, delayed messages, keys."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq
import pytest

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.api.test_dashboard import TOKEN, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, failed_job, namespace_for
from tests.queues import IMAGE_QUEUE, PROMPT_QUEUE
from tests.servers import wait_for
from workers import ops
from workers.broker import build_broker
from workers.jobs.outcome import StageOutcome, hand_over
from workers.jobs.record import JobStatusStore
from workers.jobs.scrub import REDACTED
from workers.keys.pool import key_health

#: A provider key, a webhook secret: values the failing stage below puts in its exception.
PROVIDER_KEY = "sk-live-7f3a9c2e5b1d"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5"


class FlakyUpload:
    """An ``upload`` actor that raises ``failures`` times, each time with every secret in the message."""

    def __init__(self, broker: dramatiq.Broker, failures: int) -> None:
        self.failures, self.calls = failures, 0
        self.lock = threading.Lock()
        dramatiq.actor(self.run, actor_name="upload", queue_name="upload", broker=broker, max_retries=1,
                       min_backoff=10, max_backoff=20)

    def run(self, payload: dict[str, object]) -> None:
        with self.lock:
            self.calls += 1
            failing = self.calls <= self.failures
        if failing:
            raise RuntimeError(f"provider refused key={PROVIDER_KEY} token={TOKEN} signing={WEBHOOK_SECRET}")
        hand_over(StageOutcome(final_state="succeeded"))


@contextmanager
def flaky_worker(settings: Settings, tmp_path: Path, failures: int) -> Iterator[tuple[Namespace, FlakyUpload]]:
    """A namespace whose ``upload`` stage runs in this process (one thread), with secrets configured."""
    config = tmp_path / "remote.toml"
    config.write_text('[providers.sim]\nkind = "openai"\nbase_url = "http://127.0.0.1:9"\n'
                      'keys_env = "FRAMEQUEUE_KEYS_SCRUB"\n')
    ns = namespace_for(settings, "scrub")
    secret = ns.settings.model_copy(update={"api_token": TOKEN, "webhook_secret": WEBHOOK_SECRET,
                                            "remote_config": config})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAMEQUEUE_KEYS_SCRUB", f"sk-other-key,{PROVIDER_KEY}")
        broker = build_broker(secret)
    upload = FlakyUpload(broker, failures)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        yield Namespace(secret, broker, ns.status), upload
    finally:
        worker.stop()


def upload_job(ns: Namespace) -> JobSpec:
    """A job recorded at its last stage, with that stage's message sent."""
    spec = JobSpec(prompt="a kettle whistling", kind=JobKind.image, width=64, height=64)
    ns.status.create(spec, stage_plan(spec.kind))
    ns.enqueue("upload", {"job": spec.model_dump(mode="json")})
    return spec


def finished(status: JobStatusStore, job_id: str, timeout_s: float = 60) -> str:
    return str(wait_for(lambda: (state := status.state_of(job_id)) in {"succeeded", "failed"} and state,
                        timeout_s, f"job {job_id} to finish"))


def test_a_failed_jobs_traceback_is_kept_without_secrets_and_retry_finishes_it(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with flaky_worker(settings, tmp_path, failures=2) as (ns, upload):
        spec = upload_job(ns)
        assert finished(ns.status, spec.id) == "failed"
        record = ns.status.get(spec.id)
        assert record is not None
        queue_key = f"{ns.settings.namespace}:upload"
        stored = [ns.status.client.hget(ns.status.job_key(spec.id), "traceback"), record.error,
                  *ns.status.client.hvals(f"{queue_key}.XQ.msgs"), *ns.status.client.hvals(ns.status.dead_letters_key),
                  *(json.dumps(fields) for _, fields in ns.status.client.xrange(ns.status.events_key))]

        with api_server(ns.settings) as url, signed_in(url) as client:
            page = client.get(f"/dashboard/jobs/{spec.id}").text
            retried = client.post(f"/dashboard/jobs/{spec.id}/retry", data=client.form())
            assert finished(ns.status, spec.id) == "succeeded"
            again = client.post(f"/dashboard/jobs/{spec.id}/retry", data=client.form())

    assert "Traceback (most recent call last)" in record.traceback and "RuntimeError: provider refused" in \
        record.traceback and "in run" in record.traceback
    assert record.traceback.count(REDACTED) == 3 and record.dead_letter.startswith("upload\t")
    logged = caplog.text
    assert "Failed to process message upload" in logged and "RuntimeError: provider refused key=[redacted]" in logged
    for text in [*stored, page, logged]:
        assert PROVIDER_KEY not in text and TOKEN not in text and "c2VjcmV0LXNpZ25pbmcta2V5" not in text
    assert 'id="job-traceback"' in page and "RuntimeError: provider refused key=[redacted]" in page
    assert 'action="/dashboard/jobs/' + spec.id + '/retry"' in page
    assert retried.headers["location"] == f"/dashboard/jobs/{spec.id}?done=job_retried"
    assert again.headers["location"] == f"/dashboard/jobs/{spec.id}?done=gone"
    assert upload.calls == 3
    done = ns.status.get(spec.id)
    assert done is not None and done.traceback == done.error == done.dead_letter == ""
    assert ns.status.client.zcard(f"{queue_key}.XQ") == 0


def test_a_failed_job_whose_dead_letter_is_gone_is_retried_from_its_first_stage(settings: Settings) -> None:
    ns = namespace_for(settings, "retry")
    spec, letter = failed_job(ns)
    batch_key = ns.status.batch_key("b-retry")
    ns.status.client.hset(ns.status.job_key(spec.id), mapping={"batch_key": batch_key})
    ns.status.client.hset(batch_key, mapping={"finished": 1, "n_failed": 1, "completed_at": 1.0})
    ops.delete_dead_letter(ns.status, IMAGE_QUEUE, letter.options["redis_message_id"])

    assert ops.retry_job(ns.broker, ns.status, spec.id)
    assert not ops.retry_job(ns.broker, ns.status, spec.id)

    [queued] = ops.ready_messages(ns.status, PROMPT_QUEUE)
    record = ns.status.get(spec.id)
    assert queued["args"][0]["job"]["id"] == spec.id and ops.ready_messages(ns.status, IMAGE_QUEUE) == []
    assert record is not None and record.state == "queued" and record.stage == "" and record.error == ""
    assert ns.status.client.hgetall(batch_key) == {"finished": "0", "n_failed": "0"}
    assert ns.status.client.ttl(ns.status.job_key(spec.id)) == -1
    assert ns.status.client.zscore(ns.status.active_key, spec.id) is not None


def test_a_queue_page_lists_its_delayed_messages_soonest_due_first(settings: Settings) -> None:
    ns = namespace_for(settings, "delayed")
    later = ns.enqueue(IMAGE_QUEUE, {"job": {"id": "job-later"}}, delay_ms=3_600_000)
    sooner = ns.enqueue(IMAGE_QUEUE, {"job": {"id": "job-sooner"}}, delay_ms=120_000, retries=2)
    ns.enqueue(IMAGE_QUEUE, {"job": {"id": "job-ready"}})
    for queue in (IMAGE_QUEUE, f"{IMAGE_QUEUE}.DQ"):  # bytes that are no message, where a worker would find them
        ns.status.client.hset(f"{ns.settings.namespace}:{queue}.msgs", f"poison-{queue}", "\xff not json")
    ns.status.client.rpush(f"{ns.settings.namespace}:{IMAGE_QUEUE}", "poison-image")

    delayed, read = ops.delayed_messages(ns.status, IMAGE_QUEUE)
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        page = client.get(f"/dashboard/queues/{IMAGE_QUEUE}").text

    assert [message.job_id for message in delayed] == ["", "job-sooner", "job-later"] and read == 3
    ready = ops.ready_messages(ns.status, IMAGE_QUEUE)
    assert delayed[0].due_at == 0 and [m["args"][0]["job"]["id"] for m in ready] == ["job-ready"]
    assert delayed[1].retries == 2 and delayed[1].due_at == sooner.options["eta"] / 1000
    section = page[page.index('id="delayed"'):page.index("Dead letters")]
    rows = [section.index(f'data-message-id="{m.message_id}"') for m in (sooner, later)]
    assert rows == sorted(rows) and "job-ready" not in section
    assert "in 2 min" in section and "in 1 h 0 min" in section


def test_a_disabled_key_is_enabled_again_from_the_overview(settings: Settings) -> None:
    ns = namespace_for(settings, "keys")
    fingerprint = uuid.uuid4().hex[:12]
    state_key = f"{ns.settings.namespace}:keys:replicate:{fingerprint}"
    ns.status.client.hset(state_key, mapping={"requests": 3, "disabled_reason": "HTTP 401 from replicate"})

    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, signed_in(url) as client:
        before = client.get("/dashboard").text
        enabled = client.post(f"/dashboard/keys/{fingerprint}/enable", data=client.form(back="/dashboard"))
        after = client.get("/dashboard").text
        ask = client.post(f"/dashboard/keys/{fingerprint}/disable", data=client.form(back="/dashboard"))
        still = [row.state for row in key_health(ns.status.client, ns.settings.namespace)]
        disabled = client.post(f"/dashboard/keys/{fingerprint}/disable",
                               data=client.form(back="/dashboard", confirmed="yes"))
        unknown = client.post("/dashboard/keys/0123456789ab/enable", data=client.form(back="/dashboard"))
        wrong_verb = client.post(f"/dashboard/keys/{fingerprint}/drop", data=client.form())

    assert f'action="/dashboard/keys/{fingerprint}/enable"' in before
    assert enabled.headers["location"] == "/dashboard?done=key_enabled"
    assert f'action="/dashboard/keys/{fingerprint}/disable"' in after
    assert "Are you sure?" in ask.text and still == ["ok"]
    assert disabled.headers["location"] == "/dashboard?done=key_disabled"
    [row] = key_health(ns.status.client, ns.settings.namespace)
    assert row.state == "disabled" and row.disabled_reason == "disabled by an operator"
    assert unknown.headers["location"] == "/dashboard?done=gone" and wrong_verb.status_code == 404
