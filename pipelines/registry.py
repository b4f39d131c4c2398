"""A per-process cache of loaded models, held within a memory budget.

Loading a model takes seconds to minutes; a worker process loads each model it needs once
and keeps it resident for every later job. :class:`ModelRegistry` is that cache. It is
thread-safe: when two worker threads ask for the same model at once, one loads it and the
other waits for the result instead of loading a second copy.

With a memory budget, the registry evicts the least recently used models when a new one would
not fit. Sizes are measured (:mod:`pipelines.model_memory`): the torch storages each entry
holds. Entries may share storages (an img2img pipeline built with ``from_pipe`` on a
text-to-image pipeline's components, a batcher wrapping a model), so the budget is charged with
the union of the resident entries' storages, each counted once. An entry is charged, in
:meth:`ModelRegistry.resident`, the bytes of its storages that no resident entry loaded before
it holds; evicting an entry frees only the storages no other resident entry holds, and an
entry whose storages all stay held by others is not evicted for nothing.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import torch

from pipelines.model_memory import MB, StorageKey, tensor_storages

T = TypeVar("T")

#: Held while a model loads. diffusers and transformers build a model's modules on the meta device by
#: patching torch for the whole process while they load (accelerate's ``init_empty_weights``); two
#: loads at once leave the patch in place and every later load in the process fails ("Cannot copy
#: out of meta tensor"). Re-entrant: a loader may load another model inside its own load. Here, not
#: in pipelines/loading.py, so that a loader without diffusers (the prompt screen) imports no diffusers.
LOADING_LOCK = threading.RLock()

logger = logging.getLogger(__name__)


def default_device() -> str:
    """Return ``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelRegistry:
    """Loads each named model once per process and hands out the cached instance.

    Parameters:
        device: The torch device every model is loaded onto; ``None`` picks
            :func:`default_device`.
        memory_budget_bytes: Most bytes of torch memory the resident models may hold together;
            ``None``: no budget, nothing is ever evicted. One budget covers every device.

    Attributes:
        loads: How many times a model was loaded (a reload after eviction counts again).
        evictions: How many models were evicted to keep within the budget.
    """

    def __init__(self, device: str | None = None, memory_budget_bytes: int | None = None) -> None:
        self.device: str = device if device is not None else default_device()
        self.memory_budget_bytes = memory_budget_bytes
        self.loads = 0
        self.evictions = 0
        self._models: dict[str, Any] = {}  # in load order
        self._held: dict[str, dict[StorageKey, int]] = {}  # what each resident model holds
        self._recency: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._name_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name: str, load: Callable[[str], T], *, size_bytes: int | None = None) -> T:
        """Return the model cached under ``name``, calling ``load(device)`` the first time.

        Different names load concurrently; the same name loads exactly once. If ``load``
        raises, nothing is cached and the next call tries again. Each call marks ``name`` as
        the most recently used model.

        With a budget, ``size_bytes`` (the model's declared size) is made room for before
        ``load`` runs, by evicting the least recently used models. Once loaded, the model's
        measured size replaces the declared one, and if the resident models are then over the
        budget, the least recently used others are evicted. A model bigger than the budget on
        its own is loaded anyway, alone, with a warning. A model holding no torch memory (an
        ONNX session, a remote client) keeps its declared size, as nothing can be measured.
        """
        cached = self._hit(name)
        if cached is not None:
            return cast(T, cached[0])
        with self._lock:
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            cached = self._hit(name)
            if cached is not None:
                return cast(T, cached[0])
            self._make_room(name, size_bytes or 0, "declared")
            model = load(self.device)
            held = tensor_storages(model)
            if not held and size_bytes:
                held = {("declared", id(model)): size_bytes}
            with self._lock:
                self._models[name] = model
                self._held[name] = held
                self._recency[name] = None
                self.loads += 1
            self._make_room(name, 0, "measured")
            return model

    def loaded_names(self) -> list[str]:
        """Return the names of the models loaded so far, in load order."""
        with self._lock:
            return list(self._models)

    def resident(self) -> list[tuple[str, int]]:
        """Each resident model's name and the bytes charged to it, least recently used first.

        A model is charged the bytes of its storages that no resident model loaded before it
        holds, so the charges add up to the memory the resident models hold together.
        """
        with self._lock:
            charged: dict[str, int] = {}
            counted: set[StorageKey] = set()
            for name, held in self._held.items():
                charged[name] = sum(size for key, size in held.items() if key not in counted)
                counted.update(held)
            return [(name, charged[name]) for name in self._recency]

    def on_evict(self, name: str, freed_bytes: int) -> None:
        """Called after ``name`` was evicted, with the bytes that eviction freed; logs them."""
        logger.info("evicted model %s from the registry (%.1f MB freed)", name, freed_bytes / MB)

    def _hit(self, name: str) -> tuple[Any] | None:
        """``(model,)`` when ``name`` is resident, after marking it most recently used."""
        with self._lock:
            if name not in self._models:
                return None
            self._recency.move_to_end(name)
            return (self._models[name],)

    def _make_room(self, keep: str, incoming_bytes: int, size_kind: str) -> None:
        """Evict least recently used models (never ``keep``) until ``incoming_bytes`` more fit."""
        budget = self.memory_budget_bytes
        if budget is None:
            return
        with self._lock:
            others = [name for name in self._recency if name != keep]
            victims = self._victims(others, budget - incoming_bytes)
            if self._resident_bytes(victims) + incoming_bytes > budget:
                size = incoming_bytes or self._resident_bytes(others)  # without the others: keep's own
                logger.warning("model %s (%s size %.1f MB) is bigger than the model memory budget "
                               "(%.1f MB): loaded alone", keep, size_kind, size / MB, budget / MB)
            evicted: list[tuple[str, Any, int]] = []
            for name in victims:
                before = self._resident_bytes(())
                del self._held[name], self._recency[name]
                evicted.append((name, self._models.pop(name), before - self._resident_bytes(())))
            self.evictions += len(evicted)
        if evicted:
            self._release(evicted)

    def _victims(self, candidates: list[str], room_bytes: int) -> list[str]:
        """The fewest of ``candidates`` (least recently used first) whose eviction leaves the
        resident models within ``room_bytes``; all of them when nothing less does.

        Taken in LRU order until they fit, then each taken model that is not needed to fit
        (most recent first) is put back: one whose storages another resident model still holds
        frees nothing on its own, and evicting it would only make its next ``get`` load a copy.
        """
        victims: list[str] = []
        for name in candidates:
            if self._resident_bytes(victims) <= room_bytes:
                break
            victims.append(name)
        for name in reversed(list(victims)):
            fewer = [victim for victim in victims if victim != name]
            if self._resident_bytes(fewer) <= room_bytes:
                victims = fewer
        return victims

    def _resident_bytes(self, without: Iterable[str]) -> int:
        """Bytes the resident models hold together, each storage once, leaving out ``without``."""
        left_out = set(without)
        union: dict[StorageKey, int] = {}
        for name, held in self._held.items():
            if name not in left_out:
                union.update(held)
        return sum(union.values())

    def _release(self, evicted: list[tuple[str, Any, int]]) -> None:
        """Drop the evicted models and, on CUDA, collect them and give their cached memory back.

        A thread still holding one keeps a working model: only the registry's reference goes. Dropped
        tensors are freed when their last reference goes; a full collection (for tensors caught in
        reference cycles) costs hundreds of milliseconds with the GIL held, so it runs only where the
        device's cache must be emptied for the next model to fit.
        """
        freed = [(name, freed_bytes) for name, _, freed_bytes in evicted]
        evicted.clear()
        if torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()
        for name, freed_bytes in freed:
            self.on_evict(name, freed_bytes)
