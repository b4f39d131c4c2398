"""Section (q) of the benchmark runs end to end at a tiny size: every stage's work is timed both ways,
and the progress arm really reports to Redis (writes and a preview land). Nothing here judges a speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.bench_progress import bench_progress


def test_the_progress_section_times_each_stage_both_ways_and_the_hook_writes_to_redis(
    redis_url: str, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    result = bench_progress(redis_url, data_dir, rounds=1, side_px=64, steps=2, frames=4)

    assert [cost.name.split(":")[0] for cost in result.costs] == ["image", "frames", "frames", "video"]
    for cost in result.costs:
        assert cost.without_s > 0 and cost.with_s > 0 and cost.inside_s > 0
        assert cost.calls >= 2 and cost.writes >= 2  # the first step and the last are always written
    image, camera, svd, video = result.costs
    assert image.previews == svd.previews == 1  # diffusion steps carry latents: the first step previews
    assert camera.previews == video.previews == 0  # counted frames carry none
    assert (image.calls, svd.calls, video.calls) == (2, 2, 4)  # a step each (4 frames need no filling in), a frame each

    printed = capsys.readouterr().out
    assert printed.startswith("(q) progress overhead")
    assert printed.count("under 5%: ") == 4
