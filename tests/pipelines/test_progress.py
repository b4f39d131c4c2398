"""Step progress from the diffusion loop, and the preview made from the latents without the VAE."""

from __future__ import annotations

import PIL.Image
import pytest
import torch

from pipelines import TextToImage
from pipelines.errors import Interrupted
from pipelines.frames_camera import CameraMotionFrames
from pipelines.frames_img2img import Img2ImgFrames
from pipelines.interpolation import keyframe_count
from pipelines.progress import StepProgress, latent_preview


def test_each_step_is_reported_with_the_latents_in_order(text_to_image: TextToImage) -> None:
    reports: list[tuple[int, int, tuple[int, ...]]] = []

    text_to_image(["a red barn"], seeds=[3], width=64, height=64, steps=4,
                  progress=lambda done, total, latents: reports.append((done, total, tuple(latents.shape))))

    assert [(done, total) for done, total, _ in reports] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {shape for _, _, shape in reports} == {(1, 4, 8, 8)}  # 64 px / 8, SD's four latent channels


def test_a_stop_still_interrupts_when_progress_is_reported(text_to_image: TextToImage) -> None:
    reports: list[int] = []

    with pytest.raises(Interrupted, match="step 2 of 4"):
        text_to_image(["a red barn"], seeds=[3], width=64, height=64, steps=4,
                      should_stop=lambda: len(reports) >= 2,
                      progress=lambda done, total, latents: reports.append(done))

    assert reports == [1, 2]


@pytest.mark.parametrize("channels", [4, 3, 1, 16])
def test_a_preview_is_an_rgb_picture_of_the_latents_size_using_the_full_range(channels: int) -> None:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((2, channels, 12, 20), generator=generator)

    preview = latent_preview(latents, index=1)

    assert (preview.mode, preview.size) == ("RGB", (20, 12))
    low, high = zip(*preview.getextrema(), strict=True)
    assert min(low) == 0 and max(high) == 255


def test_flat_latents_give_a_black_preview_rather_than_dividing_by_zero() -> None:
    preview = latent_preview(torch.zeros((1, 4, 8, 8)))

    assert preview.getextrema() == ((0, 0), (0, 0), (0, 0))


def _reports() -> tuple[list[tuple[int, int]], StepProgress]:
    reports: list[tuple[int, int]] = []
    return reports, lambda done, total, latents: reports.append((done, total))


def test_camera_frames_report_every_keyframe_and_frame_up_to_the_total() -> None:
    reports, progress = _reports()

    CameraMotionFrames()(PIL.Image.new("RGB", (64, 48), "teal"), num_frames=9, fps=8, seed=1, progress=progress)

    keyframes = keyframe_count(9, 4)
    assert reports == [(done, keyframes + 9) for done in range(1, keyframes + 10)]


def test_img2img_frames_report_every_keyframe_and_frame_up_to_the_total(text_to_image: TextToImage) -> None:
    reports, progress = _reports()
    start = PIL.Image.new("RGB", (64, 64), "teal")

    Img2ImgFrames.from_text_to_image(text_to_image)(start, "a fox", num_frames=6, fps=8, seed=1, steps=2,
                                                     progress=progress)

    keyframes = keyframe_count(6, 4)
    assert reports == [(done, keyframes + 6) for done in range(1, keyframes + 7)]
