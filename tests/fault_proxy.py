"""A TCP proxy on loopback that tests cut, black-hole and restore, to play a storage outage.

Clients (a store, a worker subprocess) are pointed at the proxy instead of the server. ``cut()``
refuses new connections (the port stops listening: ECONNREFUSED, as from a server that is down) and
resets the open ones; ``stall()`` accepts connections but forwards nothing, so a client only finds
out through its own timeouts; ``restore()`` forwards again on the same port.

Written here because no maintained PyPI package does this alone: Toxiproxy's Python clients need
its Go server, which PyPI does not ship, and pproxy and mitmproxy are proxies without a cut switch.

The port is taken below the kernel's ephemeral range: while cut, nothing listens on it, and an
ephemeral port could meanwhile become some outgoing connection's own, and block the rebind.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import struct
import threading
from pathlib import Path
from typing import cast

#: How often idle proxy threads look at the switch: the most a cut or a restore takes to apply.
POLL_S = 0.02
#: Bytes forwarded per read.
CHUNK_BYTES = 64 * 1024


def _port_below_ephemeral_range() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(10_000, max(low, 10_001)), 200):
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0), as a connection dropped by a dying server or a network."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = _port_below_ephemeral_range()
        self.state = "open"  # open | cut | stalled
        #: Connections opened through the proxy so far (a test checks its client really used it).
        self.connections = 0
        self._generation = 0  # bumped to drop every connection opened before
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._accepting: threading.Thread | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Refuse new connections and reset the open ones; returns once both are so."""
        with self._lock:
            self.state, self._generation = "cut", self._generation + 1
        self._join_all()

    def stall(self) -> None:
        """Accept connections but forward nothing, in either direction (a black hole)."""
        with self._lock:
            self.state = "stalled"

    def restore(self) -> None:
        """Forward again: listen if cut, drop what the stall held."""
        with self._lock:
            was, self.state = self.state, "open"
            if was == "stalled":
                self._generation += 1
        if was == "cut":
            self._listen()

    def close(self) -> None:
        self.cut()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(POLL_S)
        self._accepting = self._spawn(self._accept, listener)

    def _spawn(self, target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"fault-proxy-{self.port}")
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def _join_all(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(10)

    def _accept(self, listener: socket.socket) -> None:
        try:
            while self.state != "cut":
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                with self._lock:
                    if self.state == "cut":  # accepted while the cut was closing the listener
                        _reset(client)
                        continue
                    self.connections += 1
                    generation = self._generation
                self._spawn(self._forward, client, generation)
        finally:
            listener.close()  # only this thread uses it: no fd closed under another thread's feet
            self._forget()

    def _forward(self, client: socket.socket, generation: int) -> None:
        upstream: socket.socket | None = None
        try:
            while self.state == "stalled" and self._generation == generation:
                threading.Event().wait(POLL_S)
            if self._generation != generation:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            peers = {client: upstream, upstream: client}
            with selectors.DefaultSelector() as selector:
                for sock in peers:
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ)
                while self._generation == generation:
                    if self.state == "stalled":
                        threading.Event().wait(POLL_S)
                        continue
                    for event, _ in selector.select(POLL_S):
                        source = cast(socket.socket, event.fileobj)
                        data = source.recv(CHUNK_BYTES)
                        if not data or self._generation != generation:  # checked after the read: no
                            return  # byte sent after a cut goes through, so no call begun after it succeeds
                        peers[source].setblocking(True)
                        peers[source].sendall(data)
                        peers[source].setblocking(False)
        except OSError:
            return
        finally:
            if self._generation == generation:
                client.close()  # the connection ended by itself: a clean close, nothing lost
            else:
                _reset(client)
            if upstream is not None:
                upstream.close()
            self._forget()

    def _forget(self) -> None:
        with self._lock:
            self._threads.discard(threading.current_thread())
