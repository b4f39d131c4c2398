"""The image-to-video backend on the tiny random-weight Stable Video Diffusion model, built offline."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import cv2
import imageio_ffmpeg
import numpy as np
import PIL.Image
import pytest

from pipelines import ImageToVideoFrames
from pipelines.errors import Interrupted, InvalidInputError
from pipelines.profiles import ModelProfile
from pipelines.progress import latent_preview
from pipelines.tiny_models import TINY_VIDEO_FRAMES, build_tiny_image_to_video_model
from pipelines.video_encode import encode_h264
from tests.pipelines.conftest import draw_landscape

#: Steps per test call: enough to see the loop, few enough to keep each call well under a second.
STEPS = 3


class RecordingPipeline:
    """Passes everything through to ``pipeline`` and keeps the keyword arguments of each call."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.pipeline(*args, **kwargs)


@pytest.fixture(scope="module")
def video(tiny_profile: ModelProfile) -> ImageToVideoFrames:
    return ImageToVideoFrames.from_pretrained(tiny_profile.video_model, device="cpu")


@pytest.fixture(scope="module")
def still() -> PIL.Image.Image:
    return draw_landscape(96, 64)


def test_the_tiny_model_is_built_offline_the_same_on_every_host_and_loads(tmp_path: pathlib.Path) -> None:
    for name in ("a", "b"):
        build_tiny_image_to_video_model(tmp_path / name)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    index = json.loads((tmp_path / "a" / "model_index.json").read_text())
    assert index["_class_name"] == "StableVideoDiffusionPipeline"
    size_bytes = sum(path.stat().st_size for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert size_bytes < 10 * 2**20

    loaded = ImageToVideoFrames.from_pretrained(str(tmp_path / "a"))

    assert loaded.max_model_frames == TINY_VIDEO_FRAMES  # the UNet's trained clip length
    assert loaded.size_multiple_px == 8  # latents are 1/8 of the frame, as in SVD


@pytest.mark.parametrize(("num_frames", "size"), [(8, (96, 64)), (20, (96, 64)), (1, (96, 64)), (6, (60, 44))])
def test_frames_have_the_requested_count_and_the_stills_size(
    video: ImageToVideoFrames, num_frames: int, size: tuple[int, int]
) -> None:
    output = video(draw_landscape(*size), num_frames=num_frames, fps=8, seed=1, steps=STEPS)

    assert output.frames.shape == (num_frames, size[1], size[0], 3)
    assert output.frames.dtype == np.uint8
    assert output.fps == 8


def test_frames_are_deterministic_per_seed(video: ImageToVideoFrames, still: PIL.Image.Image) -> None:
    def render(seed: int) -> np.ndarray:
        return video(still, num_frames=8, fps=8, seed=seed, steps=STEPS).frames

    first = render(3)
    assert np.array_equal(first, render(3))
    assert not np.array_equal(first, render(4))
    assert not np.array_equal(first[0], first[-1])  # the frames of a clip differ


def test_the_model_makes_all_the_frames_it_can_and_more_are_interpolated_between_them(
    video: ImageToVideoFrames, still: PIL.Image.Image
) -> None:
    recording = RecordingPipeline(video.pipeline)
    capped = ImageToVideoFrames(recording, max_model_frames=6)  # type: ignore[arg-type]

    direct = capped(still, num_frames=5, fps=8, seed=2, steps=STEPS).frames
    longer = capped(still, num_frames=16, fps=8, seed=2, steps=STEPS).frames

    assert [(call["num_frames"], call["fps"]) for call in recording.calls] == [(5, 8), (6, 3)]  # 5 gaps of 15
    model_only = ImageToVideoFrames(video.pipeline, max_model_frames=6)(still, num_frames=6, fps=3, seed=2, steps=STEPS)
    assert np.array_equal(longer[0], model_only.frames[0]) and np.array_equal(longer[-1], model_only.frames[-1])
    assert len(direct) == 5 and len(longer) == 16


def test_the_pipeline_runs_under_the_lock(video: ImageToVideoFrames, still: PIL.Image.Image) -> None:
    held: list[bool] = []

    def should_stop() -> bool:
        held.append(video.lock.locked())
        return False

    video(still, num_frames=4, fps=8, seed=0, steps=STEPS, should_stop=should_stop)

    assert held == [True] * STEPS
    assert not video.lock.locked()


def test_a_stop_interrupts_between_diffusion_steps(video: ImageToVideoFrames, still: PIL.Image.Image) -> None:
    asked: list[int] = []

    with pytest.raises(Interrupted) as stopped:
        video(still, num_frames=8, fps=8, seed=0, steps=5, should_stop=lambda: asked.append(1) or len(asked) >= 2)

    assert stopped.value.where == "step 2 of 5 of the clip"
    assert len(asked) == 2
    assert not video.lock.locked()


def test_a_stop_interrupts_the_interpolated_frames(video: ImageToVideoFrames, still: PIL.Image.Image) -> None:
    asked: list[int] = []
    frames = TINY_VIDEO_FRAMES + 6

    with pytest.raises(Interrupted, match=f"3 of {frames} frames"):
        video(still, num_frames=frames, fps=8, seed=0, steps=STEPS,
              should_stop=lambda: asked.append(1) or len(asked) > STEPS + 3)


def test_asking_and_never_stopping_changes_nothing(video: ImageToVideoFrames, still: PIL.Image.Image) -> None:
    asked: list[int] = []

    plain = video(still, num_frames=8, fps=8, seed=5, steps=STEPS).frames
    watched = video(still, num_frames=8, fps=8, seed=5, steps=STEPS, should_stop=lambda: asked.append(1) or False)

    assert np.array_equal(plain, watched.frames)
    assert len(asked) == STEPS


def test_progress_counts_the_steps_then_the_interpolated_frames(
    video: ImageToVideoFrames, still: PIL.Image.Image
) -> None:
    reports: list[tuple[int, int]] = []
    previews: list[PIL.Image.Image] = []

    def progress(done: int, total: int, latents: Any) -> None:
        reports.append((done, total))
        if latents is not None:
            previews.append(latent_preview(latents))

    frames = TINY_VIDEO_FRAMES + 4
    video(still, num_frames=frames, fps=8, seed=0, steps=STEPS, progress=progress)

    assert reports == [(done, STEPS + frames) for done in range(1, STEPS + frames + 1)]
    assert len(previews) == STEPS  # each step carries one frame's latents, 1/8 of the still
    assert {preview.size for preview in previews} == {(96 // 8, 64 // 8)}


def test_a_clip_within_the_models_length_reports_only_its_steps(
    video: ImageToVideoFrames, still: PIL.Image.Image
) -> None:
    reports: list[tuple[int, int]] = []

    video(still, num_frames=8, fps=8, seed=0, steps=STEPS,
          progress=lambda done, total, latents: reports.append((done, total)))

    assert reports == [(done, STEPS) for done in range(1, STEPS + 1)]


@pytest.mark.parametrize("arguments", [{"num_frames": 0}, {"fps": 0}, {"steps": 0}])
def test_counts_under_one_are_rejected(
    video: ImageToVideoFrames, still: PIL.Image.Image, arguments: dict[str, int]
) -> None:
    with pytest.raises(InvalidInputError):
        video(still, **{"num_frames": 8, "fps": 8, "seed": 0, "steps": STEPS, **arguments})


def test_the_frames_encode_to_an_mp4_that_decodes_every_frame(
    video: ImageToVideoFrames, still: PIL.Image.Image, output_dir: pathlib.Path
) -> None:
    output = video(still, num_frames=10, fps=8, seed=7, steps=STEPS)

    info = encode_h264(output.frames, still.width, still.height, output.fps, output_dir / "clip.mp4")

    num_frames, duration_s = imageio_ffmpeg.count_frames_and_secs(str(info.path))
    assert (info.num_frames, num_frames) == (10, 10)
    assert duration_s == pytest.approx(output.duration_s, abs=0.1)
    capture = cv2.VideoCapture(str(info.path))
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape == (still.height, still.width, 3)
