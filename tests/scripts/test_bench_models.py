"""Section (o) of the benchmark runs end to end at a tiny size: its numbers come out, and the
settings it compares are what they say (swaps where the budget holds one model, none elsewhere).
Nothing here judges a speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.bench_models import bench_models


def test_the_two_models_section_prints_positive_numbers_for_each_setting_and_swap(
    redis_url: str, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    result = bench_models(redis_url, data_dir, jobs=2, rounds=1, swaps=1, dummy_width=32)

    assert set(result.rounds) == {"A", "B", "C"}
    assert all(each.jobs_per_s > 0 for each in result.rounds.values())
    # A's budget holds one model, so alternating jobs swap; B holds both, C's workers hold their own.
    assert result.rounds["A"].model_loads > 0 and result.rounds["A"].evictions > 0
    for letter in ("B", "C"):
        assert result.rounds[letter].model_loads == result.rounds[letter].evictions == 0
    assert result.dummy is not None
    for cost in (result.tiny, result.dummy):
        assert cost.cold_ms > 0 and cost.hit_ms > 0 and cost.swap_ms > 0 and cost.size_bytes > 0
        assert cost.evictions >= 1  # the swap evicted the other model
    assert result.dummy.size_bytes > result.tiny.size_bytes
    assert result.collect_ms > 0

    printed = capsys.readouterr().out
    assert printed.startswith("(o) two image models")
    assert "(A/C " in printed and "(B/C " in printed and "not measured here" in printed
