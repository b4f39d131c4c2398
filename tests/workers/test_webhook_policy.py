"""Webhooks go only where the policy lets them: public https by default, checked at delivery, never redirected."""

from __future__ import annotations

import argparse
import contextlib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from pydantic import ValidationError

from queue_config.jobs import JobSpec
from tests.servers import free_port, wait_for
from tests.workers.test_webhooks import LOOPBACK, SECRET, hooked_job, own_status, serving  # noqa: F401 - fixture
from workers.cli.services import _webhook_url
from workers.doors.webhook_policy import WebhookPolicy, WebhookRefused
from workers.doors.webhooks import WebhookSender
from workers.jobs.record import JobStatusStore

#: What a receiver inside the network might say; a recorded error must never repeat it.
INSIDE_WORDS = b"redis_version:7.2.4 internal-admin-console"


class Answering(ThreadingHTTPServer):
    """A loopback receiver that records each request and gives every one the same answer.

    With ``tls`` (a server context) it speaks https and records the name each client asked for (SNI).
    """

    def __init__(self, code: int = 200, headers: dict[str, str] | None = None, body: bytes = b"",
                 tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        self.server_names: list[str | None] = []
        answering = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                answering.requests.append(dict(self.headers))
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a sender reads only so much
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        if tls:
            tls.sni_callback = lambda _socket, name, _context: answering.server_names.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextmanager
def answering(**kwargs: object) -> Iterator[Answering]:
    server = Answering(**kwargs)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def webhook_error(status: JobStatusStore, job_id: str) -> str:
    return str(wait_for(lambda: status.client.hget(status.job_key(job_id), "webhook_error"), 20,
                        "the webhook error to be recorded"))


@pytest.mark.parametrize(("url", "reason"), [
    ("https://127.0.0.1/hook", "a loopback address"),
    ("https://localhost:6379/", "a loopback address"),
    ("https://2130706433/", "a loopback address"),  # 127.0.0.1 spelt as one number
    ("https://[::ffff:127.0.0.1]/", "a loopback address"),
    ("https://[::1]:8080/", "a loopback address"),
    ("https://0.0.0.0/", "an unspecified address"),
    ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("https://10.1.2.3/", "a private address"),
    ("https://192.168.0.10:8443/", "a private address"),
    ("https://224.0.0.1/", "a multicast address"),
    ("https://240.0.0.1/", "a reserved address"),
    ("https://100.64.0.1/", "not a public address"),
])
def test_the_policy_refuses_every_destination_inside_the_network(url: str, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason) as refused:
        WebhookPolicy().destination(url)

    assert "127." not in str(refused.value) and "10.1" not in str(refused.value)  # the rule, never the address


def test_the_policy_lets_through_public_https_and_what_the_allow_list_names() -> None:
    assert WebhookPolicy().destination("https://93.184.215.14:8443/in?x=1").addresses == ("93.184.215.14",)
    assert WebhookPolicy().destination("https://93.184.215.14:8443/in?x=1").target == "/in?x=1"
    with pytest.raises(WebhookRefused, match="plain http is not allowed"):
        WebhookPolicy().destination("http://93.184.215.14/")
    assert WebhookPolicy(allow_http=True).destination("http://93.184.215.14/").port == 80

    by_name = WebhookPolicy(allowed_hosts=["LocalHost"]).destination("https://localhost:9/")
    assert by_name.addresses and by_name.host == "localhost"
    assert WebhookPolicy(allowed_hosts=["10.0.0.0/8"]).destination("https://10.1.2.3/").addresses == ("10.1.2.3",)
    with pytest.raises(WebhookRefused):
        WebhookPolicy(allowed_hosts=["10.0.0.0/8"]).destination("https://192.168.1.1/")


def test_a_host_that_resolves_to_any_inside_address_is_refused() -> None:
    policy = WebhookPolicy(resolver=lambda host, port: ["93.184.215.14", "10.0.0.7"])

    with pytest.raises(WebhookRefused, match="a private address"):
        policy.destination("https://hooks.example.com/")


@pytest.mark.parametrize(("url", "reason"), [
    ("file:///etc/passwd", "http:// or https://"),
    ("gopher://example.com/", "http:// or https://"),
    ("https://user:pass@example.com/", "user name or password"),
    ("https://example.com:99999/", "bad port"),
    ("https:///no-host", "no host"),
    ("https://exa mple.com/", "without spaces"),
    ("not a url at all", "without spaces"),
    ("https://example.com/" + "a" * 2100, "longer than 2048"),
])
def test_a_bad_webhook_url_is_refused_at_the_door_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        JobSpec(prompt="a tern", webhook_url=url)
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        _webhook_url(url)


def test_a_webhook_to_loopback_is_refused_at_delivery_and_the_receiver_never_hears_of_it(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    sender = WebhookSender(own_status, SECRET, max_attempts=3, policy=WebhookPolicy(allow_http=True))
    with answering(body=INSIDE_WORDS) as inside:
        spec, _ = hooked_job(own_status, f"http://127.0.0.1:{inside.port}/")
        with serving(sender):
            error = webhook_error(own_status, spec.id)

    assert error == ("webhook refused: the host resolves to a loopback address "
                     "(see FRAMEQUEUE_WEBHOOK_ALLOWED_HOSTS)")
    assert inside.requests == []


def test_redirects_are_not_followed_and_the_error_never_quotes_the_receiver(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    sender = WebhookSender(own_status, SECRET, max_attempts=1, policy=LOOPBACK)
    with answering() as elsewhere, answering(body=INSIDE_WORDS, code=503) as talkative, answering(
            code=302, headers={"Location": f"http://127.0.0.1:{elsewhere.port}/"}) as redirecting:
        moved, _ = hooked_job(own_status, f"http://127.0.0.1:{redirecting.port}/", "a tern, moved")
        unwell, _ = hooked_job(own_status, f"http://127.0.0.1:{talkative.port}/", "a tern, unwell")
        with serving(sender):
            errors = webhook_error(own_status, moved.id), webhook_error(own_status, unwell.id)

    assert errors == ("webhook gave up after 1 attempts: HTTP 302 (redirects are not followed)",
                      "webhook gave up after 1 attempts: HTTP 503")
    assert (len(redirecting.requests), elsewhere.requests) == (1, [])


def test_the_sender_connects_to_the_address_it_checked_and_names_the_host(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    """``rebind.test`` resolves only through the policy: a second lookup (DNS rebinding) would fail."""
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.9.9.9"]

    policy = WebhookPolicy(allow_http=True, allowed_hosts=["127.0.0.1/32"], resolver=rebinding)
    sender = WebhookSender(own_status, SECRET, policy=policy)
    with answering() as receiver:
        hooked_job(own_status, f"http://rebind.test:{receiver.port}/hook")
        with serving(sender):
            wait_for(lambda: receiver.requests, 20, "the delivery")
            wait_for(lambda: not own_status.client.exists(sender.retry_key), 10, "the delivery to be settled")

    assert lookups == ["rebind.test"]
    assert receiver.requests[0]["Host"] == f"rebind.test:{receiver.port}"


def test_https_names_the_host_in_sni_and_checks_its_certificate_while_connecting_to_the_checked_address(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    authority = trustme.CA()
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    servers = []
    for name in ("hooks.test", "someone-else.test"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert(name).configure_cert(context)
        servers.append(context)
    policy = WebhookPolicy(allowed_hosts=["127.0.0.1"], resolver=lambda host, port: ["127.0.0.1"])
    sender = WebhookSender(own_status, SECRET, max_attempts=1, policy=policy, tls=trusting)
    with answering(tls=servers[0]) as genuine, answering(tls=servers[1]) as impostor:
        ok, _ = hooked_job(own_status, f"https://hooks.test:{genuine.port}/hook", "a tern, over tls")
        spoofed, _ = hooked_job(own_status, f"https://hooks.test:{impostor.port}/hook", "a tern, spoofed")
        with serving(sender):
            wait_for(lambda: genuine.requests, 20, "the delivery over https")
            error = webhook_error(own_status, spoofed.id)

    assert genuine.server_names == ["hooks.test"] and genuine.requests[0]["Host"] == f"hooks.test:{genuine.port}"
    assert error == "webhook gave up after 1 attempts: TLS certificate not valid for the host"
    assert impostor.requests == [] and own_status.get(ok.id).webhook_error == ""  # type: ignore[union-attr]


def test_a_dns_server_that_never_answers_costs_one_attempt_not_a_stuck_sender(
    own_status: JobStatusStore  # noqa: F811 - the fixture
) -> None:
    never = threading.Event()

    def silent_dns(host: str, port: int) -> list[str]:
        never.wait(60)
        return ["93.184.215.14"]

    sender = WebhookSender(own_status, SECRET, max_attempts=1, timeout_s=0.5, policy=WebhookPolicy(resolver=silent_dns))
    try:
        spec, _ = hooked_job(own_status, "https://hooks.example.com/")
        with serving(sender):
            error = webhook_error(own_status, spec.id)
    finally:
        never.set()

    assert error == "webhook gave up after 1 attempts: the host name did not resolve within 0.5 s"
