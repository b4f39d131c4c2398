"""A local stand-in for the remote providers: a real HTTP server on loopback.

It speaks the request and response shapes of both clients (OpenAI-compatible images and
chat; Replicate predictions), enforces per-key quotas and revocations the way providers
do, and can be told to slow down or fail. Tests, the benchmark and anyone without keys
point a client's ``base_url`` at :attr:`ProviderSimulator.base_url`.

Run it on its own::

    python -m pipelines.remote.simulator --port 8700 --keys k1,k2 --rpm 60

and control it over HTTP (``/_sim/...``, see :mod:`pipelines.remote.simulation.admin_routes`)
or, in process, with the methods below.
"""

from __future__ import annotations

import argparse
import threading
from types import TracebackType

from pipelines.remote.keys import key_fingerprint
from pipelines.remote.simulation.handler import SimServer
from pipelines.remote.simulation.ledger import KeyConfig, KeyLedger
from pipelines.remote.simulation.state import SimState

__all__ = ["KeyConfig", "ProviderSimulator", "main"]


class ProviderSimulator:
    """A provider API on a background thread.

    Parameters:
        keys: The keys it accepts, each with its quota and revocation state.
        latency_ms: Delay before answering each API request, in milliseconds.
        host: The address to listen on; loopback by default (the control endpoints need no key).
        port: The port; 0 picks a free one (read it back from :attr:`base_url`).
    """

    def __init__(
        self, keys: dict[str, KeyConfig], *, latency_ms: int = 0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SimState(KeyLedger(keys), latency_ms=latency_ms)
        self._address = (host, port)
        self._server: SimServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return f"ProviderSimulator({where})"

    @property
    def base_url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:8700``; only while started."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return self._server.base_url

    def start(self) -> ProviderSimulator:
        """Bind and serve on a daemon thread; return self."""
        if self._server is None:
            self._server = SimServer(self._address, self.state)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="provider-simulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; requests in flight are abandoned."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server, self._thread = None, None

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # Controls: the same as the /_sim/ endpoints.

    def revoke(self, key_or_fingerprint: str) -> None:
        """Answer the key's requests with 401 until :meth:`restore`.

        Raises:
            KeyError: When no key has that value or fingerprint.
        """
        if not self.state.ledger.set_revoked(key_or_fingerprint, True):
            raise KeyError("no such key or fingerprint")

    def restore(self, key_or_fingerprint: str) -> None:
        """Accept a revoked key again."""
        if not self.state.ledger.set_revoked(key_or_fingerprint, False):
            raise KeyError("no such key or fingerprint")

    def set_latency(self, latency_ms: int) -> None:
        """Delay every later API answer by ``latency_ms`` milliseconds."""
        self.state.latency_ms = max(0, latency_ms)

    def start_fault_burst(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests from known keys with HTTP ``status`` (a 5xx)."""
        self.state.ledger.start_fault_burst(count, status)

    def refuse_prompts_with(self, *words: str) -> None:
        """Refuse every later prompt holding one of ``words`` (case-blind) as the content policy does:
        HTTP 400 (422 for predictions), the request's fault. No words: refuse none."""
        self.state.refused_words = frozenset(word.lower() for word in words)

    def reset_quotas(self) -> None:
        """Empty every key's 60 s window."""
        self.state.ledger.reset_quotas()

    def set_pending_polls(self, polls: int) -> None:
        """Make each new prediction need ``polls`` polls before it finishes (0: done at creation)."""
        self.state.pending_polls = max(0, polls)

    def fail_next_predictions(self, count: int) -> None:
        """Make the next ``count`` predictions end ``failed``."""
        self.state.fail_next_predictions(count)

    def stats(self) -> dict[str, dict[str, object]]:
        """Per key fingerprint: accepted, rate_limited, unauthorized, server_errors, accepted_at (epoch s)."""
        return self.state.ledger.stats()


def main(argv: list[str] | None = None) -> None:
    """Serve a simulator until interrupted (``python -m pipelines.remote.simulator --help``)."""
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible and Replicate-style provider API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    parser.add_argument("--port", type=int, default=8700, help="port to listen on (default: 8700)")
    parser.add_argument("--keys", default="sim-key-1", help="comma-separated keys to accept")
    parser.add_argument("--rpm", type=int, default=60, help="requests per minute allowed per key")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before each answer, in ms")
    args = parser.parse_args(argv)
    keys = {key.strip(): KeyConfig(requests_per_minute=args.rpm) for key in args.keys.split(",") if key.strip()}
    simulator = ProviderSimulator(keys, latency_ms=args.latency_ms, host=args.host, port=args.port).start()
    print(f"provider simulator at {simulator.base_url}")
    for key in keys:
        print(f"  key fingerprint {key_fingerprint(key)}: {args.rpm} requests/minute")
    print("OpenAI-compatible: /v1/images/generations, /v1/chat/completions")
    print("Replicate-style:   /v1/models/{owner}/{name}/predictions, /v1/predictions/{id}")
    print("controls:          /_sim/stats, /_sim/keys/{fingerprint}/revoke ... (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


if __name__ == "__main__":
    main()
