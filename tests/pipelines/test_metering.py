"""Device seconds: the time a block held a CUDA device, between two synchronizations; nothing on a CPU."""

from __future__ import annotations

import time

import pytest
import torch

from pipelines.metering import Meter, on_device, start_meter, take_meter


def test_a_block_on_the_cpu_adds_no_device_time() -> None:
    start_meter()
    with on_device("cpu"):
        time.sleep(0.02)

    assert take_meter().device_s == 0.0


def test_a_block_on_cuda_adds_its_time_between_two_synchronizations(monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    # No GPU here: the synchronization is recorded instead of made, and the timing is the real one.
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(str(device)))
    start_meter()
    started = time.perf_counter()
    with on_device("cuda:0"):
        time.sleep(0.05)
    elapsed_s = time.perf_counter() - started

    assert synced == ["cuda:0", "cuda:0"]
    assert 0.05 <= take_meter().device_s <= elapsed_s


def test_a_batch_splits_its_device_time_between_its_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    meters = [Meter(), Meter(), None]  # the third job keeps no meter: its share is dropped, not given to others
    with on_device("cuda", meters):
        time.sleep(0.06)

    assert meters[0].device_s == meters[1].device_s  # type: ignore[union-attr]
    assert 0.02 <= meters[0].device_s < 0.06  # type: ignore[union-attr]
