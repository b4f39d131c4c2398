"""Webhooks: signed deliveries of a job's state changes to a real HTTP receiver, retried, never blocking."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from tests.conftest import settings_env
from tests.servers import REPO_ROOT, free_port, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.doors import webhooks
from workers.doors.streams import ensure_group
from workers.doors.webhook_policy import WebhookPolicy
from workers.doors.webhook_signing import sign, signing_key, standard_secret
from workers.doors.webhooks import WebhookSender
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job

SECRET = "webhook-test-secret"
#: What a receiver dedupes on: the same for every delivery of one event.
EVENT_ID = "webhook-id"
#: The code a held delivery is recorded with: the receiver never answered it.
UNANSWERED = 0
#: The receivers here listen on loopback over plain http: what the policy refuses unless told.
LOOPBACK = WebhookPolicy(allow_http=True, allowed_hosts=["127.0.0.1"])
#: The same, for a ``framequeue webhooks`` process.
LOOPBACK_ENV = {"FRAMEQUEUE_WEBHOOK_ALLOW_HTTP": "true", "FRAMEQUEUE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}


@dataclass(frozen=True)
class Delivery:
    code: int
    headers: dict[str, str]
    body: bytes
    #: When the request arrived (epoch s), before the receiver answered.
    at_s: float

    @property
    def event(self) -> dict[str, str]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver(ThreadingHTTPServer):
    """Records every delivery; answers 500 to the first ``failures`` of them.

    With ``hold_first``, the first request is never answered: it waits until ``release`` is set.
    """

    def __init__(self, failures: int, *, hold_first: bool = False) -> None:
        self.failures = failures
        self.deliveries: list[Delivery] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (the chaos test kills it): nothing arrived
                    return
                arrived_s = time.time()
                if hold_first and not receiver.deliveries:
                    receiver.deliveries.append(Delivery(UNANSWERED, dict(self.headers), body, arrived_s))
                    receiver.release.wait(30)
                    return
                code = 500 if len(receiver.deliveries) < receiver.failures else 200
                receiver.deliveries.append(Delivery(code, dict(self.headers), body, arrived_s))
                with contextlib.suppress(OSError):
                    self.send_response(code)
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def accepted_events(self) -> list[dict[str, str]]:
        return [delivery.event for delivery in self.deliveries if delivery.code == 200]


@contextmanager
def receiving(failures: int, *, hold_first: bool = False) -> Iterator[Receiver]:
    server = Receiver(failures, hold_first=hold_first)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()


@contextmanager
def serving(sender: WebhookSender) -> Iterator[WebhookSender]:
    """``sender`` serving in a thread, as ``framequeue webhooks`` does, until the block ends."""
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            sender.serve_once(block_ms=100)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sender
    finally:
        stop.set()
        thread.join(5)
        sender.close()  # the deliveries in flight end (each within its timeout)


def serve_once_and_join(sender: WebhookSender) -> None:
    """One pass of ``sender``, and the deliveries it started run to their end."""
    sender.serve_once(block_ms=10)
    sender.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(failures=2) as server:
        yield server


@pytest.fixture
def sender(status: JobStatusStore) -> Iterator[WebhookSender]:
    with serving(WebhookSender(status, SECRET, max_attempts=3, first_retry_s=0.2, policy=LOOPBACK)) as running:
        yield running


@pytest.fixture
def own_status(status: JobStatusStore) -> Iterator[JobStatusStore]:
    """A job store on a namespace of its own: its event stream and consumer group no other test touches."""
    store = JobStatusStore(status.client, f"webhooks-{uuid.uuid4().hex[:8]}")
    yield store
    for key in store.client.scan_iter(match=f"{store.namespace}:*"):
        store.client.delete(key)


def hooked_job(status: JobStatusStore, url: str, prompt: str = "a tern over surf") -> tuple[JobSpec, str]:
    """A job that names ``url`` recorded as queued, and the id of the event that says so."""
    spec = JobSpec(prompt=prompt, kind=JobKind.image, width=64, height=64, webhook_url=url)
    assert status.create(spec, stage_plan(spec.kind))
    [(event_id, _)] = [(entry_id, fields) for entry_id, fields in status.client.xrange(status.events_key)
                       if fields["job_id"] == spec.id]
    return spec, event_id


@pytest.mark.usefixtures("workers")
def test_a_jobs_state_changes_are_delivered_signed_and_failed_deliveries_retried(
    broker, status, sender, receiver: Receiver
) -> None:
    spec = JobSpec(prompt="a tern over surf", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                   webhook_url=receiver.url)
    submit_job(broker, status, spec)
    wait_until_finished(status, spec.id)

    def all_delivered() -> bool:  # the succeeded event, and each refused one on its retry (a backoff later)
        accepted = receiver.accepted_events()
        refused = {delivery.headers[EVENT_ID] for delivery in receiver.deliveries if delivery.code == 500}
        return any(e["event"] == "succeeded" for e in accepted) and refused <= {e["id"] for e in accepted}

    wait_for(all_delivered, 60, "the succeeded webhook and the retries of the refused ones")

    events = receiver.accepted_events()
    assert {e["job_id"] for e in events} == {spec.id}
    assert [e["event"] for e in events if e["event"] in ("queued", "succeeded")].count("succeeded") == 1
    assert "queued" in [e["event"] for e in events]  # one of the two refused deliveries, retried
    refused = [delivery for delivery in receiver.deliveries if delivery.code == 500]
    assert len(refused) == 2
    for delivery in receiver.deliveries:  # as a receiver checks them, with the Standard Webhooks library
        assert Webhook(SECRET.encode()).verify(delivery.body, delivery.headers) == delivery.event
        assert delivery.headers[EVENT_ID] == delivery.event["id"]
    assert {delivery.headers[EVENT_ID] for delivery in refused} <= {e["id"] for e in events}
    [succeeded] = [e for e in events if e["event"] == "succeeded"]
    record = status.get(spec.id)
    assert (succeeded["state"], succeeded["stage"], succeeded["result_url"]) == (
        "succeeded", record.stage, record.result_url)
    assert record.result_url.startswith("http")


def test_a_refused_delivery_is_retried_with_doubling_backoff_under_the_same_event_id(
    own_status: JobStatusStore
) -> None:
    first_retry_s, max_attempts = 0.2, 4
    sender = WebhookSender(own_status, SECRET, max_attempts=max_attempts, first_retry_s=first_retry_s,
                           policy=LOOPBACK)
    with receiving(failures=100) as receiver:
        spec, event_id = hooked_job(own_status, receiver.url)
        #: (attempt, when it is due, when the sender had scheduled it at the latest), as the retry set holds them
        scheduled: list[tuple[int, float, float]] = []
        #: Deliveries made by a pass that ended before the retry was due (none are).
        too_early: list[int] = []
        serve_once_and_join(sender)
        while entries := own_status.client.zrange(sender.retry_key, 0, -1, withscores=True):
            [(member, due_s)] = entries
            scheduled.append((json.loads(member)["attempt"], due_s, time.time()))
            assert len(scheduled) < max_attempts, "the sender never gives up"
            serve_once_and_join(sender)
            if time.time() < due_s:
                too_early.append(len(receiver.deliveries) - len(scheduled))
            wait_for(lambda due_s=due_s: time.time() >= due_s, 10, f"attempt {len(scheduled) + 1} to be due")
            serve_once_and_join(sender)
        deliveries = list(receiver.deliveries)

    assert [delivery.code for delivery in deliveries] == [500] * max_attempts
    assert [delivery.headers[EVENT_ID] for delivery in deliveries] == [event_id] * max_attempts
    assert [delivery.event["id"] for delivery in deliveries] == [event_id] * max_attempts
    assert [attempt for attempt, _, _ in scheduled] == [2, 3, 4]
    for number, ((_, due_s, scheduled_by_s), failed, retried) in enumerate(
            zip(scheduled, deliveries, deliveries[1:], strict=False)):
        backoff_s = first_retry_s * 2**number  # 0.2 s, 0.4 s, 0.8 s
        # The sender set ``due_s`` after the failed delivery arrived and before its pass ended.
        assert due_s - scheduled_by_s - 1e-3 <= backoff_s <= due_s - failed.at_s + 1e-3, (number, due_s)
        assert retried.at_s >= due_s - 1e-3
    assert too_early and set(too_early) == {0}
    record = own_status.get(spec.id)
    assert record is not None and record.webhook_error == f"webhook gave up after {max_attempts} attempts: HTTP 500"


@pytest.mark.timeout(120)
def test_a_delivery_a_killed_sender_was_making_is_made_by_another_and_nothing_is_lost(
    settings: Settings, own_status: JobStatusStore, artifacts_dir: Path
) -> None:
    client, stream = own_status.client, own_status.events_key
    ensure_group(client, stream, webhooks.GROUP, start_id="$")  # as the sender does; the jobs' events follow
    timeout_s = 2.0  # the killed sender's: its claims are due again LEASE_MARGIN_S after that
    retry_key = WebhookSender(own_status, SECRET).retry_key
    with receiving(failures=0, hold_first=True) as receiver:
        event_ids = [hooked_job(own_status, receiver.url, f"a kite, take {n}")[1] for n in range(3)]
        env = {**settings_env(settings), "FRAMEQUEUE_NAMESPACE": own_status.namespace,
               "FRAMEQUEUE_WEBHOOK_SECRET": SECRET, "FRAMEQUEUE_WEBHOOK_TIMEOUT_S": str(timeout_s), **LOOPBACK_ENV}
        with open(artifacts_dir / "webhooks-killed.log", "wb") as log:
            dying = subprocess.Popen([sys.executable, "-m", "workers.cli", "webhooks"], env=env, cwd=REPO_ROOT,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(lambda: receiver.deliveries, 60, "the first sender to start delivering")
            finally:
                os.killpg(dying.pid, signal.SIGKILL)
                dying.wait(10)
        killed_at_s = time.time()
        in_delivery = {json.loads(member)["event"]["id"]: due_s
                       for member, due_s in client.zrange(retry_key, 0, -1, withscores=True)}
        receiver.release.set()
        with serving(WebhookSender(own_status, SECRET, max_attempts=3, first_retry_s=0.2, policy=LOOPBACK)):
            wait_for(lambda: {e["id"] for e in receiver.accepted_events()} == set(event_ids), 30,
                     "the second sender to deliver every event")
            wait_for(lambda: not client.exists(retry_key), 10, "the second sender to settle every delivery")

    held, *delivered = receiver.deliveries
    assert held.code == UNANSWERED and held.headers[EVENT_ID] in event_ids
    # The held delivery was still in the set when its sender died, claimed until its lease ran out.
    assert in_delivery[held.headers[EVENT_ID]] > killed_at_s
    assert client.xpending(stream, webhooks.GROUP)["pending"] == 0  # every event had been handed on
    # At least once: a delivery the killed sender had made but not yet settled comes again, under the same id,
    # so a receiver can drop the repeat.
    assert {delivery.headers[EVENT_ID] for delivery in delivered} == set(event_ids)
    assert all(delivery.code == 200 and delivery.event["id"] == delivery.headers[EVENT_ID] for delivery in delivered)
    records = [client.hget(key, "webhook_error") for key in client.scan_iter(match=own_status.job_key("*"))]
    assert len(records) == 3 and records == [None] * 3


def test_events_a_sender_read_but_died_before_handing_on_are_handed_on_by_another(
    own_status: JobStatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stream = own_status.client, own_status.events_key
    ensure_group(client, stream, webhooks.GROUP, start_id="$")
    with receiving(failures=0) as receiver:
        event_ids = [hooked_job(own_status, receiver.url, f"a heron, take {n}")[1] for n in range(2)]
        # What a sender that dies right after reading leaves: the events pending for it in the group.
        client.xreadgroup(webhooks.GROUP, "a-sender-that-died", {stream: ">"}, count=10)
        assert client.xpending(stream, webhooks.GROUP)["pending"] == 2
        monkeypatch.setattr(webhooks, "CLAIM_IDLE_MS", 200)  # instead of 30 s
        with serving(WebhookSender(own_status, SECRET, max_attempts=3, first_retry_s=0.2, policy=LOOPBACK)):
            wait_for(lambda: sorted(e["id"] for e in receiver.accepted_events()) == sorted(event_ids), 30,
                     "another sender to deliver the events the dead one had read")

    assert client.xpending(stream, webhooks.GROUP)["pending"] == 0


@pytest.mark.usefixtures("workers")
def test_an_unreachable_receiver_never_holds_up_the_job_and_the_record_says_why(broker, status, sender) -> None:
    spec = JobSpec(prompt="a gull on a post", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                   webhook_url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    submit_job(broker, status, spec)

    assert wait_until_finished(status, spec.id).state == "succeeded"
    record = wait_for(lambda: (r := status.get(spec.id)) and r.webhook_error and r, 30, "the webhook to give up")
    assert record.webhook_error.startswith("webhook gave up after 3 attempts: ConnectionRefusedError")


def test_a_signature_fails_for_another_body_secret_id_or_an_old_timestamp() -> None:
    now = int(time.time())
    body = b'{"event": "succeeded"}'
    signed = {"webhook-id": "1-0", "webhook-timestamp": str(now),
              "webhook-signature": sign(signing_key(SECRET), "1-0", now, body)}
    receiver = Webhook(SECRET.encode())

    assert receiver.verify(body, signed) == {"event": "succeeded"}
    for tampered, headers in [(b'{"event": "failed"}', signed), (body, {**signed, "webhook-id": "2-0"})]:
        with pytest.raises(WebhookVerificationError):
            receiver.verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(b"another-secret").verify(body, signed)
    old = now - 3600
    with pytest.raises(WebhookVerificationError, match="too old"):
        receiver.verify(body, {**signed, "webhook-timestamp": str(old),
                               "webhook-signature": sign(signing_key(SECRET), "1-0", old, body)})


def test_a_secret_in_the_standard_form_signs_with_the_key_it_names(own_status: JobStatusStore) -> None:
    secret = "whsec_" + base64.b64encode(b"\x00\x01 a key of raw bytes \xff").decode()
    sender = WebhookSender(own_status, secret, policy=LOOPBACK)
    with receiving(failures=0) as receiver:
        _, event_id = hooked_job(own_status, receiver.url)
        with serving(sender):
            wait_for(lambda: receiver.accepted_events(), 20, "the delivery")

    [delivery] = receiver.deliveries
    assert Webhook(secret).verify(delivery.body, delivery.headers)["id"] == event_id == delivery.headers["webhook-id"]
    # A plain secret's key is its UTF-8 bytes: the same key as its whsec_ form.
    assert signing_key(standard_secret(SECRET)) == signing_key(SECRET) == SECRET.encode()
    with pytest.raises(ValueError, match="not base64"):
        WebhookSender(own_status, "whsec_not base64!")


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
