"""Everything a running simulator remembers besides keys: latency, predictions, output files.

A prediction's output is computed when it is created; ``pending_polls`` only decides how
many polls it takes to be revealed, which is how the simulator plays a model that outlives
``Prefer: wait``. All methods are thread-safe (the server answers on many threads).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pipelines.remote.simulation.ledger import KeyLedger

#: How many predictions and output files are kept before the oldest are forgotten.
MAX_STORED = 1000
#: Statuses after which a prediction no longer changes.
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})


@dataclass
class _Prediction:
    public: dict[str, Any]
    output: Any
    fails: bool
    polls_left: int


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SimState:
    """The simulator's mutable state, shared by its request threads.

    Parameters:
        ledger: Key admission and per-key stats.
        latency_ms: Delay before answering each API request, in milliseconds.
    """

    def __init__(self, ledger: KeyLedger, *, latency_ms: int = 0) -> None:
        self.ledger = ledger
        self.latency_ms = latency_ms
        self.pending_polls = 0
        #: Words whose prompts the content policy refuses (HTTP 400: the request's fault, not the provider's).
        self.refused_words: frozenset[str] = frozenset()
        self._failures_left = 0
        self._predictions: OrderedDict[str, _Prediction] = OrderedDict()
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def fail_next_predictions(self, count: int) -> None:
        """Make the next ``count`` predictions end ``failed`` instead of ``succeeded``."""
        with self._lock:
            self._failures_left = max(0, count)

    def refuses(self, prompt: str) -> bool:
        """Whether the content policy refuses ``prompt``: it holds one of :attr:`refused_words`."""
        words = set(prompt.lower().split())
        return any(word in words for word in self.refused_words)

    def store_file(self, data: bytes, suffix: str = ".png") -> str:
        """Keep an output file and return its name under ``/_files/``."""
        name = secrets.token_hex(8) + suffix
        with self._lock:
            self._files[name] = data
            while len(self._files) > MAX_STORED:
                self._files.popitem(last=False)
        return name

    def file(self, name: str) -> bytes | None:
        with self._lock:
            return self._files.get(name)

    def create_prediction(
        self, base_url: str, model: str, version: str | None, inputs: dict[str, Any], output: Any
    ) -> dict[str, Any]:
        """Record a new prediction with its (hidden) ``output``; return its public JSON."""
        prediction_id = secrets.token_hex(10)
        public = {
            "id": prediction_id,
            "model": model,
            "version": version or "",
            "input": inputs,
            "logs": "",
            "output": None,
            "error": None,
            "status": "starting",
            "created_at": _now_iso(),
            "urls": {
                "get": f"{base_url}/v1/predictions/{prediction_id}",
                "cancel": f"{base_url}/v1/predictions/{prediction_id}/cancel",
            },
        }
        with self._lock:
            fails = self._failures_left > 0
            self._failures_left -= int(fails)
            record = _Prediction(public, output, fails, self.pending_polls)
            self._predictions[prediction_id] = record
            while len(self._predictions) > MAX_STORED:
                self._predictions.popitem(last=False)
            self._advance(record)
            return dict(record.public)

    def poll_prediction(self, prediction_id: str) -> dict[str, Any] | None:
        """Count one poll of a prediction and return its public JSON, or None if unknown."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None:
                return None
            record.polls_left -= 1
            if record.polls_left > 0 and record.public["status"] == "starting":
                record.public["status"] = "processing"
            self._advance(record)
            return dict(record.public)

    def cancel_prediction(self, prediction_id: str) -> dict[str, Any] | None:
        """Cancel a prediction that has not finished; return its public JSON, or None if unknown."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None:
                return None
            if record.public["status"] not in FINAL_STATUSES:
                record.public.update(status="canceled", completed_at=_now_iso())
            return dict(record.public)

    def _advance(self, record: _Prediction) -> None:
        """Finish a prediction once no more polls are due: failed or succeeded, as decided at creation."""
        if record.public["status"] in FINAL_STATUSES or record.polls_left > 0:
            return
        if record.fails:
            record.public.update(status="failed", error="simulated model failure", completed_at=_now_iso())
        else:
            record.public.update(status="succeeded", output=record.output, completed_at=_now_iso())
