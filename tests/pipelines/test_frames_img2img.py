from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from pipelines.errors import InvalidInputError
from pipelines.frames_img2img import Img2ImgFrames
from pipelines.profiles import ModelProfile
from pipelines.text_to_image import TextToImage


@pytest.fixture(scope="module")
def img2img(text_to_image: TextToImage) -> Img2ImgFrames:
    return Img2ImgFrames.from_text_to_image(text_to_image)


@pytest.fixture(scope="module")
def start_image(text_to_image: TextToImage) -> PIL.Image.Image:
    return text_to_image(["a fox"], seeds=[0], width=64, height=64, steps=2).images[0]


def test_img2img_is_built_on_the_text_to_image_components(img2img: Img2ImgFrames, text_to_image: TextToImage) -> None:
    assert img2img.pipeline.unet is text_to_image.pipeline.unet
    assert img2img.pipeline.vae is text_to_image.pipeline.vae
    assert img2img.lock is text_to_image.lock  # they share a scheduler, so calls take turns


@pytest.mark.parametrize(("num_frames", "keyframe_every"), [(9, 4), (6, 4), (1, 4), (5, 1)])
def test_img2img_frames_have_the_requested_count_and_shape(
    img2img: Img2ImgFrames, start_image: PIL.Image.Image, num_frames: int, keyframe_every: int
) -> None:
    output = img2img(
        start_image,
        "a fox",
        num_frames=num_frames,
        fps=8,
        seed=1,
        steps=2,
        keyframe_every=keyframe_every,
    )
    assert output.frames.shape == (num_frames, 64, 64, 3)
    assert output.frames.dtype == np.uint8
    assert output.fps == 8


def test_the_clip_starts_from_the_input_image_and_then_changes(
    img2img: Img2ImgFrames, start_image: PIL.Image.Image
) -> None:
    frames = img2img(start_image, "a fox", num_frames=9, fps=8, seed=1, steps=2).frames
    assert np.array_equal(frames[0], np.asarray(start_image))
    assert not np.array_equal(frames[-1], frames[0])


def test_img2img_frames_are_deterministic_per_seed(img2img: Img2ImgFrames, start_image: PIL.Image.Image) -> None:
    def render(seed: int) -> np.ndarray:
        return img2img(start_image, "a fox", num_frames=5, fps=8, seed=seed, steps=2).frames

    assert np.array_equal(render(3), render(3))
    assert not np.array_equal(render(3), render(4))


def test_img2img_loads_on_its_own_too(tiny_profile: ModelProfile, start_image: PIL.Image.Image) -> None:
    frames = Img2ImgFrames.from_pretrained(tiny_profile.image_model)(
        start_image, "a fox", num_frames=3, fps=4, seed=0, steps=2, keyframe_every=2
    ).frames
    assert frames.shape == (3, 64, 64, 3)


def test_an_out_of_range_strength_is_rejected(img2img: Img2ImgFrames, start_image: PIL.Image.Image) -> None:
    with pytest.raises(InvalidInputError, match="strength"):
        img2img(start_image, "a fox", num_frames=3, fps=4, seed=0, steps=2, strength=0.0)
