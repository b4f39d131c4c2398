"""Gathering: worker threads' requests of one shape share one model call, each thread gets its own result.

A :class:`Batcher` is what the image stage's renders (workers/stages/batching.py) and the img2img
frames' keyframes (workers/stages/keyframe_batching.py) have in common. Each worker thread hands
:meth:`Batcher.submit` one request and blocks. The first request of a shape opens a batch and waits
up to ``window_ms`` for more of the same shape, or until ``max_batch`` have joined; then that thread
makes ONE call for all of them and hands each thread its own result. While an earlier batch holds the
model, the next stays open past its window and keeps gathering. No thread of its own: the opening
thread makes the call, the others wait on the batch.

Each job keeps its own result, status and retry, since each thread returns or raises for its job alone:

- A batch call that raises (anything but all jobs being cancelled) is not retried as a batch: each
  thread makes its own request alone, so one bad request fails only its own job.
- Cancellation: the call is asked to stop only when every job in the batch is cancelled; a job
  cancelled while the others go on raises :class:`~pipelines.Interrupted` in its own thread once the
  batch is done, and its result is dropped.
- Device time: a call's time on the GPU is split evenly between its jobs' meters
  (pipelines/metering.py), each request carrying the meter of the thread that made it.

What a kind of request adds is how to make one call for one request and for several
(:meth:`Batcher.call_alone`, :meth:`Batcher.call_together`) and what a job cancelled while its batch
went on was stopped after (:meth:`Batcher.went_on_without`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pipelines import Interrupted
from pipelines.errors import ShouldStop
from pipelines.metering import Meter, on_device

#: Default longest wait of a lone request for company, in ms.
DEFAULT_WINDOW_MS = 50.0
#: Longest a waiting thread stays blocked in one call, in s: dramatiq's time limit interrupts a
#: thread between Python instructions, never inside a blocking wait.
WAIT_SLICE_S = 1.0


class Gathered(Protocol):
    """What a batcher asks of a request: the shape it may share a call with, its job's meter, and
    whether its job was cancelled (asked from whichever thread makes the call)."""

    @property
    def shape(self) -> Hashable: ...

    @property
    def meter(self) -> Meter | None: ...

    def cancelled(self) -> bool: ...


RequestT = TypeVar("RequestT", bound=Gathered)
ResultT = TypeVar("ResultT")


@dataclass
class _Batch(Generic[RequestT, ResultT]):
    requests: list[RequestT] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    #: One per request once done: a result, an exception for that job, or None (call alone).
    results: list[ResultT | BaseException | None] = field(default_factory=list)


class Batcher(ABC, Generic[RequestT, ResultT]):
    """Gathers concurrent requests of one shape into one call.

    Parameters:
        max_batch: The most requests in one call; 1 turns batching off (each is called alone).
        window_ms: How long the first request of a batch waits for others, in ms.
        device: Where the calls run; on CUDA each call's time is metered as its jobs' device time.
    """

    def __init__(self, *, max_batch: int = 1, window_ms: float = DEFAULT_WINDOW_MS, device: str = "cpu") -> None:
        self.max_batch = max_batch
        self.window_ms = window_ms
        self.device = device
        self._lock = threading.Lock()
        #: Held by the batch being called: one call at a time per batcher (as the model's own lock).
        self._turn = threading.Lock()
        self._open: dict[Hashable, _Batch[RequestT, ResultT]] = {}

    @abstractmethod
    def call_alone(self, request: RequestT) -> ResultT:
        """One request's result from a call of its own, which asks its own job whether to stop."""

    @abstractmethod
    def call_together(self, requests: list[RequestT], should_stop: ShouldStop) -> Sequence[ResultT]:
        """One result per request, in order, from ONE call; ``should_stop`` says when all were cancelled."""

    @abstractmethod
    def went_on_without(self, request: RequestT) -> str:
        """How far a job cancelled during its batch got, for its :class:`Interrupted`."""

    def submit(self, request: RequestT) -> ResultT:
        """This request's result, made alone or in a batch of its shape.

        Raises:
            Interrupted: when the request's job was cancelled (alone, or once its batch is done).
            Exception: whatever calling it alone raised.
        """
        if self.max_batch <= 1:
            return self.alone(request)
        batch, slot = self._join(request)
        if slot == 0:
            self._lead(batch)
        else:
            while not batch.done.wait(WAIT_SLICE_S):
                pass  # waits in slices: a thread blocked in C for good would never see its time limit
        result = batch.results[slot] if len(batch.results) > slot else None
        if result is None:
            return self.alone(request)
        if isinstance(result, BaseException):
            raise result
        if request.cancelled():
            raise Interrupted(self.went_on_without(request))
        return result

    def alone(self, request: RequestT) -> ResultT:
        """``request`` called on its own, its device time its job's."""
        with on_device(self.device, [request.meter]):
            return self.call_alone(request)

    def _join(self, request: RequestT) -> tuple[_Batch[RequestT, ResultT], int]:
        with self._lock:
            batch = self._open.get(request.shape)
            if batch is None:
                batch = self._open[request.shape] = _Batch()
            batch.requests.append(request)
            if len(batch.requests) >= self.max_batch:
                del self._open[request.shape]
                batch.full.set()
            return batch, len(batch.requests) - 1

    def _lead(self, batch: _Batch[RequestT, ResultT]) -> None:
        """Wait out the window and the model's turn, close the batch and make its call.

        The batch stays open while the model is busy with an earlier one, so under load batches
        fill up instead of queueing at the model half-empty. Every waiter is released, whatever
        happens.
        """
        try:
            batch.full.wait(self.window_ms / 1000)
            while not self._turn.acquire(timeout=WAIT_SLICE_S):
                pass
            try:
                self._close(batch)
                batch.results = self._results(list(batch.requests))
            finally:
                self._turn.release()
        finally:
            self._close(batch)
            batch.done.set()  # results left unset (the leader was interrupted): each is called alone

    def _close(self, batch: _Batch[RequestT, ResultT]) -> None:
        with self._lock:
            shape = batch.requests[0].shape
            if self._open.get(shape) is batch:
                del self._open[shape]

    def _results(self, requests: list[RequestT]) -> list[ResultT | BaseException | None]:
        if len(requests) == 1:  # the leader alone: as if there were no batcher, but in its turn
            try:
                return [self.alone(requests[0])]
            except Exception as error:  # raised again in the leader's thread, for its own job
                return [error]
        try:
            with on_device(self.device, [request.meter for request in requests]):
                results = self.call_together(requests, lambda: all(request.cancelled() for request in requests))
        except Interrupted as stopped:
            return [Interrupted(stopped.where) for _ in requests]  # every job was cancelled; one error each
        except Exception:
            return [None] * len(requests)
        if len(results) != len(requests):  # not one each: no job can be told which is its own
            return [None] * len(requests)
        return list(results)
