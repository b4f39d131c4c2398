"""What one stage run uses, counted where it is used: provider calls, and time on a CUDA device.

The worker starts a :class:`Meter` before a stage runs (``start_meter``) and takes it back after
(``take_meter``); the code in between reports to whichever meter is current, without being handed
one: a provider client counts each call it starts (``count_provider_call``), and a model call timed
with ``on_device`` adds its seconds on the GPU. Nothing is counted while no meter is started.

The current meter is a context variable, so each worker thread has its own. Work a stage hands to a
thread pool takes its meter along with ``contextvars.copy_context()``; a batch that one thread runs
for several jobs names their meters to ``on_device``, which splits the time between them.

Device time is the wall time of the timed block between two ``torch.cuda.synchronize`` calls: the
first lets work queued earlier finish outside the block, the second waits for the block's own
kernels. It is how long the run held the device, CPU-side steps of the model call included, not a
count of busy GPU cycles. On a CPU nothing is added: a run on the CPU holds no device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Meter:
    """One stage run's counts. Thread-safe: a run's pool threads may count into it together."""

    provider_calls: int = 0
    device_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_call(self) -> None:
        with self._lock:
            self.provider_calls += 1

    def add_device_s(self, seconds: float) -> None:
        with self._lock:
            self.device_s += seconds


_current: ContextVar[Meter | None] = ContextVar("framequeue_meter", default=None)


def start_meter() -> Meter:
    """A fresh meter, current on this thread until ``take_meter``."""
    meter = Meter()
    _current.set(meter)
    return meter


def take_meter() -> Meter:
    """This thread's meter (an empty one if none was started), which stops being current."""
    meter = _current.get() or Meter()
    _current.set(None)
    return meter


def current_meter() -> Meter | None:
    return _current.get()


def count_provider_call() -> None:
    """One request started at a provider with one key: a key failover is a second call."""
    if (meter := _current.get()) is not None:
        meter.add_call()


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


@contextmanager
def on_device(device: str, meters: Sequence[Meter | None] | None = None) -> Iterator[None]:
    """Time the block as device seconds when ``device`` is CUDA; on any other device, do nothing.

    The time goes to the current meter, or is split evenly between ``meters`` (one per job of a
    batch, None for a job that keeps no meter).
    """
    if not is_cuda(device):
        yield
        return
    import torch  # here: pipelines/remote counts calls through this module and never imports torch

    torch.cuda.synchronize(device)
    started = time.perf_counter()
    try:
        yield
    finally:
        torch.cuda.synchronize(device)
        elapsed_s = time.perf_counter() - started
        targets = list(meters) if meters is not None else [_current.get()]
        for meter in targets:
            if meter is not None:
                meter.add_device_s(elapsed_s / len(targets))
