"""Webhooks: signed deliveries of a job's state changes to a real HTTP receiver, retried, never blocking."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from queue_config.jobs import JobKind, JobSpec
from tests.servers import free_port, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.doors.webhooks import WebhookSender, sign, verify_signature
from workers.jobs.submit import submit_job

SECRET = "webhook-test-secret"


class Receiver(ThreadingHTTPServer):
    """Records every delivery; answers 500 to the first ``failures`` of them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.deliveries: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = 500 if len(receiver.deliveries) < receiver.failures else 200
                receiver.deliveries.append((code, dict(self.headers), body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def accepted_events(self) -> list[dict[str, str]]:
        return [json.loads(body) for code, _, body in self.deliveries if code == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(failures=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def sender(status) -> Iterator[WebhookSender]:  # type: ignore[no-untyped-def]
    sender = WebhookSender(status, SECRET, max_attempts=3, first_retry_s=0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            sender.serve_once(block_ms=100)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sender
    stop.set()
    thread.join(5)


@pytest.mark.usefixtures("workers")
def test_a_jobs_state_changes_are_delivered_signed_and_failed_deliveries_retried(
    broker, status, sender, receiver: Receiver
) -> None:
    spec = JobSpec(prompt="a tern over surf", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                   webhook_url=receiver.url)
    submit_job(broker, status, spec)
    wait_until_finished(status, spec.id)

    wait_for(lambda: any(e["event"] == "succeeded" for e in receiver.accepted_events()), 30, "the succeeded webhook")

    events = receiver.accepted_events()
    assert {e["job_id"] for e in events} == {spec.id}
    assert [e["event"] for e in events if e["event"] in ("queued", "succeeded")].count("succeeded") == 1
    assert "queued" in [e["event"] for e in events]  # one of the two refused deliveries, retried
    assert sum(1 for code, _, _ in receiver.deliveries if code == 500) == 2
    for _, headers, body in receiver.deliveries:
        assert verify_signature(SECRET, headers["X-Framequeue-Timestamp"], body, headers["X-Framequeue-Signature"])


@pytest.mark.usefixtures("workers")
def test_an_unreachable_receiver_never_holds_up_the_job_and_the_record_says_why(broker, status, sender) -> None:
    spec = JobSpec(prompt="a gull on a post", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                   webhook_url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    submit_job(broker, status, spec)

    assert wait_until_finished(status, spec.id).state == "succeeded"
    record = wait_for(lambda: (r := status.get(spec.id)) and r.webhook_error and r, 30, "the webhook to give up")
    assert record.webhook_error.startswith("webhook gave up after 3 attempts: ConnectionError")


def test_a_signature_fails_for_another_body_secret_or_an_old_timestamp() -> None:
    now = int(time.time())
    signature = sign(SECRET, now, b'{"event": "succeeded"}')

    assert verify_signature(SECRET, str(now), b'{"event": "succeeded"}', signature)
    assert not verify_signature(SECRET, str(now), b'{"event": "failed"}', signature)
    assert not verify_signature("another-secret", str(now), b'{"event": "succeeded"}', signature)
    old = now - 3600
    assert not verify_signature(SECRET, str(old), b"{}", sign(SECRET, old, b"{}"))


def test_webhooks_refuse_to_run_unsigned(status) -> None:
    with pytest.raises(ValueError, match="signing secret"):
        WebhookSender(status, "")


def test_a_batch_names_a_webhook_for_its_own_events(settings, status, broker, sender, receiver: Receiver) -> None:
    from workers.batches import submit_lines
    from workers.batches.files import parse_batch

    batch_id = f"b-hook-{int(time.time() * 1000)}"
    lines = parse_batch('{"prompt": "a kite", "kind": "image"}\n', batch_id=batch_id)
    receiver.failures = 0
    submit_lines(status, broker, batch_id, "hooked", lines, webhook_url=receiver.url)

    wait_for(lambda: receiver.accepted_events(), 30, "the batch webhook")

    event = receiver.accepted_events()[0]
    assert (event["event"], event["batch_id"], event["total"]) == ("batch_submitted", batch_id, "1")
