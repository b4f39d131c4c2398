"""One receiver cannot stall webhooks: deliveries run side by side, each within a deadline, reading a few KB at most."""

from __future__ import annotations

import contextlib
import gzip
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from tests.servers import wait_for
from tests.workers.test_webhook_policy import answering, webhook_error
from tests.workers.test_webhooks import LOOPBACK, SECRET, hooked_job, own_status, serving  # noqa: F401 - fixture
from workers.doors.webhook_policy import WebhookPolicy
from workers.doors.webhook_post import MAX_ANSWER_BYTES
from workers.doors.webhook_slots import MAX_IN_FLIGHT_PER_HOST
from workers.doors.webhooks import WebhookSender
from workers.jobs.record import JobStatusStore

#: How often the dripping receiver sends one more byte of its answer.
DRIP_S = 0.1
MB = 1 << 20


class Dripping:
    """A receiver that reads a request, then answers one byte every ``DRIP_S`` and never ends, until the client goes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open = 0
        #: When each connection came (monotonic s), and how long it lasted.
        self.starts_s: list[float] = []
        self.lifetimes_s: list[float] = []
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    def serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        started = time.monotonic()
        with self._lock:
            self.open += 1
            self.starts_s.append(started)
        try:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while not self.stopped.wait(DRIP_S):
                connection.sendall(b"a")
        except OSError:
            pass  # the sender hung up
        finally:
            connection.close()
            with self._lock:
                self.open -= 1
                self.lifetimes_s.append(time.monotonic() - started)


@contextmanager
def dripping() -> Iterator[Dripping]:
    server = Dripping()
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        yield server
    finally:
        server.stopped.set()
        server.listener.close()


def gzip_of_zeros(size_bytes: int) -> bytes:
    """A gzip body that inflates to ``size_bytes`` of zeros (made a MB at a time: the test holds only the small end)."""
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", compresslevel=9) as writer:
        for _ in range(size_bytes // MB):
            writer.write(bytes(MB))
    return packed.getvalue()


class PeakRss:
    """This process's resident memory, sampled every millisecond until stopped: the highest seen."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.baseline_bytes = self.peak_bytes = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss)

    def stop(self) -> int:
        """How far above the baseline the peak went, in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak_bytes - self.baseline_bytes


def test_a_receiver_that_drips_its_answer_holds_only_its_own_deliveries_and_only_until_the_deadline(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    timeout_s = 2.0
    policy = WebhookPolicy(allow_http=True, allowed_hosts=["127.0.0.1", "localhost"])
    sender = WebhookSender(own_status, SECRET, max_attempts=1, timeout_s=timeout_s, policy=policy)
    with dripping() as slow, answering() as prompt:
        # The slow receiver's events come first: a sender delivering one at a time would be stuck behind them.
        slow_jobs = [hooked_job(own_status, f"http://localhost:{slow.port}/", f"a slow tern {n}")[0] for n in range(3)]
        for n in range(3):
            hooked_job(own_status, f"http://127.0.0.1:{prompt.port}/", f"a prompt tern {n}")
        with serving(sender):
            wait_for(lambda: len(prompt.requests) == 3, 30, "the prompt receiver's three deliveries")
            still_dripping = slow.open
            errors = [webhook_error(own_status, job.id) for job in slow_jobs]

    assert still_dripping >= 1  # the prompt receiver had everything while the slow one was still dripping
    # Two of its deliveries at once (MAX_IN_FLIGHT_PER_HOST); the third waited for a slot of its host.
    first, second, third = sorted(slow.starts_s)
    assert MAX_IN_FLIGHT_PER_HOST == 2 and second - first < 1.0 and third - first >= timeout_s - DRIP_S
    assert errors == [f"webhook gave up after 1 attempts: no answer within {timeout_s:g} s"] * 3
    assert len(slow.lifetimes_s) == 3
    assert all(timeout_s - DRIP_S <= lifetime_s < timeout_s + 1.0 for lifetime_s in slow.lifetimes_s)


def test_a_compression_bomb_in_the_answer_is_never_inflated_and_the_status_is_recorded(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    bomb = gzip_of_zeros(50 * MB)
    assert len(bomb) < MB
    sender = WebhookSender(own_status, SECRET, max_attempts=1, policy=LOOPBACK)
    with answering(code=500, headers={"Content-Encoding": "gzip"}, body=bomb) as receiver:
        spec, _ = hooked_job(own_status, f"http://127.0.0.1:{receiver.port}/")
        rss = PeakRss()
        with serving(sender):
            error = webhook_error(own_status, spec.id)
        growth_bytes = rss.stop()

    assert error == "webhook gave up after 1 attempts: HTTP 500"
    assert len(receiver.requests) == 1 and receiver.requests[0]["Accept-Encoding"] == "identity"
    assert growth_bytes < 5 * MB, f"the sender's memory grew by {growth_bytes / MB:.1f} MB"


def test_an_answer_head_longer_than_the_cap_is_not_read_to_its_end(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    sender = WebhookSender(own_status, SECRET, max_attempts=1, policy=LOOPBACK)
    with answering(headers={"X-Padding": "a" * (2 * MAX_ANSWER_BYTES)}) as receiver:
        spec, _ = hooked_job(own_status, f"http://127.0.0.1:{receiver.port}/")
        with serving(sender):
            error = webhook_error(own_status, spec.id)

    assert error == f"webhook gave up after 1 attempts: an answer head longer than {MAX_ANSWER_BYTES} bytes"
