from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

from pipelines.registry import ModelRegistry

MIB = 1024 * 1024


def linear_of_mib(mib: float) -> torch.nn.Linear:
    """A bias-free float32 linear layer whose weight is exactly ``mib`` MiB (in quarters)."""
    return torch.nn.Linear(256, int(1024 * mib), bias=False)


def loader(mib: float, calls: list[str] | None = None) -> Callable[[str], torch.nn.Linear]:
    def load(device: str) -> torch.nn.Linear:
        if calls is not None:
            calls.append(device)
        return linear_of_mib(mib)

    return load


def names(registry: ModelRegistry) -> list[str]:
    return [name for name, _ in registry.resident()]


def test_loading_a_third_model_evicts_the_least_recently_used_when_two_fit() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    for name in ("a", "b", "c"):
        registry.get(name, loader(1), size_bytes=MIB)
    assert registry.resident() == [("b", MIB), ("c", MIB)]
    assert registry.loaded_names() == ["b", "c"]
    assert (registry.loads, registry.evictions) == (3, 1)


def test_a_hit_makes_a_model_the_most_recently_used() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    registry.get("a", loader(1), size_bytes=MIB)
    registry.get("b", loader(1), size_bytes=MIB)
    registry.get("a", lambda device: pytest.fail("a was loaded again"))
    registry.get("c", loader(1), size_bytes=MIB)
    assert names(registry) == ["a", "c"]


def test_an_evicted_model_is_loaded_again_on_its_next_get() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=MIB)
    calls: list[str] = []
    first = registry.get("a", loader(1, calls))
    registry.get("b", loader(1))
    again = registry.get("a", loader(1, calls))
    assert calls == ["cpu", "cpu"] and again is not first
    assert names(registry) == ["a"] and registry.evictions == 2


def test_the_measured_size_replaces_a_declared_size_that_was_too_small() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    registry.get("a", loader(1), size_bytes=MIB)
    registry.get("b", loader(0.5), size_bytes=MIB // 2)
    registry.get("c", loader(1), size_bytes=10)  # fits as declared: nothing evicted before loading
    # Measured at 1 MiB, c puts the registry at 2.5 MiB: the least recently used (a) goes.
    assert registry.resident() == [("b", MIB // 2), ("c", MIB)]


def test_a_declared_size_that_was_too_big_evicts_before_loading_then_the_measured_size_counts() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    registry.get("a", loader(1))
    registry.get("b", loader(0.25), size_bytes=2 * MIB)
    registry.get("c", loader(0.75), size_bytes=MIB // 2)
    assert registry.resident() == [("b", MIB // 4), ("c", 3 * MIB // 4)]


def test_a_model_bigger_than_the_budget_loads_alone_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    registry.get("a", loader(1))
    registry.get("b", loader(0.5))
    with caplog.at_level(logging.WARNING, logger="pipelines.registry"):
        big = registry.get("big", loader(3), size_bytes=3 * MIB)
    assert isinstance(big, torch.nn.Linear)
    assert registry.resident() == [("big", 3 * MIB)]
    assert "big" in caplog.text and "bigger than the model memory budget" in caplog.text
    # The next model fits only once big is gone.
    registry.get("d", loader(1), size_bytes=MIB)
    assert names(registry) == ["d"]


def test_an_undeclared_model_that_measures_too_big_evicts_the_others_after_loading() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    registry.get("a", loader(1))
    registry.get("big", loader(3))
    assert registry.resident() == [("big", 3 * MIB)]


def test_tensors_shared_between_entries_are_charged_once() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=3 * MIB)
    base = registry.get("text_to_image", loader(1))
    registry.get("batcher", lambda device: SimpleNamespace(model=base))

    def from_pipe(device: str) -> SimpleNamespace:
        extra = linear_of_mib(0.5)  # a component of its own beside the shared one
        return SimpleNamespace(pipeline={"unet": base, "adapter": extra})

    registry.get("img2img", from_pipe)
    assert registry.resident() == [("text_to_image", MIB), ("batcher", 0), ("img2img", MIB // 2)]
    # 1.5 MiB resident: another 1.5 MiB fits without evicting anything.
    registry.get("other", loader(1.5))
    assert registry.evictions == 0


def test_an_entry_whose_tensors_another_still_holds_is_not_evicted_for_nothing() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    base = registry.get("text_to_image", loader(1))
    registry.get("enhancer", loader(0.5))
    registry.get("batcher", lambda device: SimpleNamespace(model=base))
    # text_to_image is the least recently used, but evicting it frees nothing while the batcher
    # holds its weights; the enhancer is evicted instead.
    registry.get("screen", loader(1), size_bytes=MIB)
    assert names(registry) == ["text_to_image", "batcher", "screen"]
    assert registry.evictions == 1


def test_entries_sharing_tensors_are_evicted_together_when_only_that_frees_enough() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    base = registry.get("text_to_image", loader(1))
    registry.get("batcher", lambda device: SimpleNamespace(model=base))
    registry.get("video", loader(2), size_bytes=2 * MIB)
    assert names(registry) == ["video"]
    assert registry.evictions == 2


def test_eviction_drops_the_reference_collects_and_empties_the_cuda_cache(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    registry = ModelRegistry(device="cpu", memory_budget_bytes=MIB)
    evicted = weakref.ref(registry.get("a", loader(1)))
    with caplog.at_level(logging.INFO, logger="pipelines.registry"):
        registry.get("b", loader(1))
    assert evicted() is None
    assert emptied == [True]
    assert "evicted model a" in caplog.text and "1.0 MB freed" in caplog.text


def test_a_thread_holding_an_evicted_model_keeps_using_it() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=MIB)
    holding = threading.Event()
    evicted = threading.Event()
    outputs: list[torch.Tensor] = []

    def worker() -> None:
        model = registry.get("a", loader(1))
        holding.set()
        evicted.wait(timeout=10)
        outputs.append(model(torch.ones(1, 256)))

    thread = threading.Thread(target=worker)
    thread.start()
    assert holding.wait(timeout=10)
    registry.get("b", loader(1))
    assert names(registry) == ["b"]
    evicted.set()
    thread.join(timeout=10)
    assert len(outputs) == 1 and outputs[0].shape == (1, 1024) and torch.isfinite(outputs[0]).all()


def test_concurrent_gets_of_one_name_load_it_once_under_a_budget() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    calls: list[str] = []
    start = threading.Barrier(6)
    results: list[object] = []

    def load(device: str) -> torch.nn.Linear:
        calls.append(device)
        time.sleep(0.05)  # widen the window in which a second load could start
        return linear_of_mib(1)

    def worker() -> None:
        start.wait()
        results.append(registry.get("a", load, size_bytes=MIB))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["cpu"] and all(result is results[0] for result in results)
    assert registry.loads == 1


def test_a_model_without_torch_memory_keeps_its_declared_size() -> None:
    registry = ModelRegistry(device="cpu", memory_budget_bytes=2 * MIB)
    registry.get("onnx_classifier", lambda device: SimpleNamespace(session="not torch"), size_bytes=MIB)
    registry.get("remote", lambda device: SimpleNamespace(client="http"))
    assert registry.resident() == [("onnx_classifier", MIB), ("remote", 0)]
    registry.get("a", loader(1.5))
    assert names(registry) == ["remote", "a"]


def test_without_a_budget_nothing_is_evicted() -> None:
    registry = ModelRegistry(device="cpu")
    for name in ("a", "b", "c"):
        registry.get(name, loader(1), size_bytes=100 * 1024 * MIB)
    gc.collect()
    assert names(registry) == ["a", "b", "c"] and registry.evictions == 0
