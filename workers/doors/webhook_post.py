"""One webhook POST to a checked destination: pinned to its checked addresses, bounded in time and in what it reads.

Built on the standard library's ``http.client`` and ``ssl`` rather than requests or httpx,
because two of its bounds need the socket in hand: connecting only to the addresses the
policy checked while TLS still names and verifies the URL's host (SNI and the certificate
check), and one deadline for the whole attempt (requests and httpx time each socket
operation, so a receiver that drips its answer a byte at a time is never timed out). A timer
shuts the socket down at the deadline, whatever the attempt is blocked on. ``http.client``
follows no redirect and never decompresses, so those two bounds hold by construction; the
answer is read through a reader that stops at ``MAX_ANSWER_BYTES``.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import ssl
import threading
import time
from typing import Any

from workers.doors.webhook_policy import Destination

#: The most of a receiver's answer read: status line, headers and body together. What is read
#: is dropped: only the status code counts, and errors never quote the receiver.
MAX_ANSWER_BYTES = 4096


class DeliveryFailed(Exception):
    """The attempt got no status code; the message says why, in the sender's words."""


class _AnswerTooLong(http.client.HTTPException):
    pass


class _CappedReader:
    """The response's file, refusing to read past ``MAX_ANSWER_BYTES`` in all."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.left = raw, MAX_ANSWER_BYTES

    def _take(self, data: bytes) -> bytes:
        self.left -= len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        if self.left <= 0:
            raise _AnswerTooLong(f"an answer head longer than {MAX_ANSWER_BYTES} bytes")
        return self._take(self.raw.readline(self.left if limit < 0 else min(limit, self.left)))

    def read(self, amount: int | None = None) -> bytes:
        return self._take(self.raw.read(self.left if amount is None or amount < 0 else min(amount, self.left)))

    def read1(self, amount: int = -1) -> bytes:
        return self.read(amount)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def peek(self, amount: int = 0) -> bytes:
        return b""

    def close(self) -> None:
        self.raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _CappedResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = _CappedReader(self.fp)  # type: ignore[assignment]


class _Connection(http.client.HTTPConnection):
    """An HTTP connection over a socket already opened (and, for https, already wrapped)."""

    response_class = _CappedResponse


@functools.cache
def _system_tls() -> ssl.SSLContext:
    """The system's trusted certificates, the host name checked (loaded once)."""
    return ssl.create_default_context()


def host_header(destination: Destination) -> str:
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    default_port = 443 if destination.scheme == "https" else 80
    return host if destination.port == default_port else f"{host}:{destination.port}"


def post(
    destination: Destination, body: bytes, headers: dict[str, str], *, deadline_s: float,
    tls: ssl.SSLContext | None = None, started_at: float | None = None,
) -> int:
    """POST ``body`` to ``destination`` within ``deadline_s`` (connecting and reading together),
    counted from ``started_at`` (``time.monotonic()``; default now) when the attempt began earlier,
    e.g. with the destination's DNS lookup.

    Returns the answer's status code. Raises ``DeliveryFailed``.
    """
    deadline = (time.monotonic() if started_at is None else started_at) + deadline_s
    expired = threading.Event()
    sockets: list[socket.socket] = []

    def expire() -> None:
        expired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
    timer.daemon = True
    timer.start()
    try:
        sock = _connect(destination, deadline, sockets)
        if destination.scheme == "https":
            sock = (tls or _system_tls()).wrap_socket(
                sock, server_hostname=destination.host, do_handshake_on_connect=False)
            sockets.append(sock)
        if expired.is_set():  # before the timer could see the socket
            raise TimeoutError
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()
        connection = _Connection(destination.host, destination.port)
        connection.sock = sock
        connection.request("POST", destination.target, body=body, headers={
            **headers, "Host": host_header(destination), "Accept-Encoding": "identity", "Connection": "close"})
        response = connection.getresponse()
        if expired.is_set():  # the head was cut short at the deadline: what was parsed is no answer
            raise TimeoutError
        with contextlib.suppress(OSError, http.client.HTTPException):
            response.read()  # what is left of MAX_ANSWER_BYTES, so the receiver sees its answer taken
        return response.status
    except ssl.SSLCertVerificationError:
        raise DeliveryFailed("TLS certificate not valid for the host") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        if expired.is_set():
            raise DeliveryFailed(f"no answer within {deadline_s:g} s") from None
        raise DeliveryFailed(str(error) if isinstance(error, _AnswerTooLong) else type(error).__name__) from None
    finally:
        timer.cancel()
        for sock in sockets:
            sock.close()


def _connect(destination: Destination, deadline: float, sockets: list[socket.socket]) -> socket.socket:
    """A connection to the first of the checked addresses that answers."""
    error: OSError = ConnectionError("no address")
    for address in destination.addresses:
        try:
            sock = socket.create_connection((address, destination.port), timeout=max(deadline - time.monotonic(), 0.01))
        except OSError as failure:
            error = failure
            continue
        sockets.append(sock)
        return sock
    raise error
