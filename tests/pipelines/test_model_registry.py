from __future__ import annotations

import threading
import time

import pytest
import torch

from pipelines.registry import ModelRegistry
from pipelines.remote import OpenAICompatibleClient


def test_registry_loads_a_model_once_when_many_threads_ask_at_once() -> None:
    registry = ModelRegistry(device="cpu")
    calls: list[str] = []
    start = threading.Barrier(8)
    results: list[object] = []

    def load(device: str) -> object:
        calls.append(device)
        time.sleep(0.05)  # widen the window in which a second load could start
        return object()

    def worker() -> None:
        start.wait()
        results.append(registry.get("text", load))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert calls == ["cpu"]
    assert len(results) == 8 and all(result is results[0] for result in results)


def test_registry_returns_the_cached_model_without_calling_load_again() -> None:
    registry = ModelRegistry(device="cpu")
    first = registry.get("image", lambda device: [device])
    second: list[str] = registry.get("image", lambda device: pytest.fail("loaded twice"))
    assert second is first


def test_registry_passes_its_device_to_the_loader() -> None:
    registry = ModelRegistry(device="cuda:1")
    assert registry.get("model", lambda device: device) == "cuda:1"


def test_registry_picks_cpu_when_no_cuda_device_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ModelRegistry().device == "cpu"


def test_a_failed_load_is_not_cached_and_is_retried() -> None:
    registry = ModelRegistry(device="cpu")

    def broken(device: str) -> object:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        registry.get("model", broken)
    assert registry.loaded_names() == []
    assert registry.get("model", lambda device: "loaded") == "loaded"


def test_loaded_names_lists_models_in_load_order() -> None:
    registry = ModelRegistry(device="cpu")
    registry.get("text", lambda device: 1)
    registry.get("embedding", lambda device: 2)
    registry.get("text", lambda device: 3)
    assert registry.loaded_names() == ["text", "embedding"]


def test_a_remote_client_loads_and_is_charged_its_declared_size_and_its_tensors() -> None:
    """A remote backend holds an HTTP session, whose urllib3 pool of connections refuses to be iterated."""
    registry = ModelRegistry(device="cpu", memory_budget_bytes=10 * 2**20)
    client = OpenAICompatibleClient("http://127.0.0.1:9", timeout_s=1.0, name="nowhere")
    weights = torch.zeros(256)  # beside the session: the walk goes on past the pool it cannot read

    loaded = registry.get("remote", lambda device: (client, weights))
    declared = registry.get("remote-alone", lambda device: client, size_bytes=2**20)

    assert loaded == (client, weights) and declared is client
    assert registry.resident() == [("remote", 256 * 4), ("remote-alone", 2**20)]
