"""A per-process cache of loaded models.

Loading a model takes seconds to minutes; a worker process loads each model it needs once
and keeps it resident for every later job. :class:`ModelRegistry` is that cache. It is
thread-safe: when two worker threads ask for the same model at once, one loads it and the
other waits for the result instead of loading a second copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch

T = TypeVar("T")


def default_device() -> str:
    """Return ``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelRegistry:
    """Loads each named model once per process and hands out the cached instance.

    Parameters:
        device: The torch device every model is loaded onto; ``None`` picks
            :func:`default_device`.
    """

    def __init__(self, device: str | None = None) -> None:
        self.device: str = device if device is not None else default_device()
        self._models: dict[str, Any] = {}
        self._name_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name: str, load: Callable[[str], T]) -> T:
        """Return the model cached under ``name``, calling ``load(device)`` the first time.

        Different names load concurrently; the same name loads exactly once. If ``load``
        raises, nothing is cached and the next call tries again.
        """
        with self._lock:
            if name in self._models:
                return cast(T, self._models[name])
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                if name in self._models:
                    return cast(T, self._models[name])
            model = load(self.device)
            with self._lock:
                self._models[name] = model
            return model

    def loaded_names(self) -> list[str]:
        """Return the names of the models loaded so far, in load order."""
        with self._lock:
            return list(self._models)
