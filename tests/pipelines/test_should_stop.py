"""Every long-running pipeline call asks ``should_stop`` between units of work and ends on a yes.

Each test counts the questions: a pipeline that never asks, or asks too rarely, fails here before a
worker ever keeps a cancelled job's thread busy.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import numpy as np
import PIL.Image
import pytest

from pipelines.errors import Interrupted
from pipelines.frames_camera import CameraMotionFrames
from pipelines.frames_img2img import Img2ImgFrames
from pipelines.interpolation import interpolate_frames, keyframe_count
from pipelines.text_to_image import TextToImage
from pipelines.video_encode import encode_h264


class StopAfter:
    """A ``should_stop`` that says stop at its ``answers``-th question (never, when None)."""

    def __init__(self, answers: int | None = None) -> None:
        self.answers = answers
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.answers is not None and self.asked >= self.answers


@pytest.fixture(scope="module")
def key_image(text_to_image: TextToImage) -> PIL.Image.Image:
    return text_to_image(["a fox"], seeds=[0], width=64, height=64, steps=1).images[0]


def noise_frames(count: int, width: int, height: int, done: list[bool] | None = None) -> Iterator[np.ndarray]:
    """Random frames, one at a time (noise is slow to encode); ``done`` gets True once all are taken."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        yield rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if done is not None:
        done.append(True)


def test_text_to_image_asks_once_per_diffusion_step(text_to_image: TextToImage) -> None:
    never = StopAfter()

    asked = text_to_image(["a fox"], seeds=[1], width=64, height=64, steps=5, should_stop=never)
    plain = text_to_image(["a fox"], seeds=[1], width=64, height=64, steps=5)

    assert never.asked == 5
    assert np.array_equal(np.asarray(asked.images[0]), np.asarray(plain.images[0]))


def test_text_to_image_stops_after_the_step_at_which_it_is_told(text_to_image: TextToImage) -> None:
    stop = StopAfter(3)

    with pytest.raises(Interrupted) as stopped:
        text_to_image(["a fox"], seeds=[1], width=64, height=64, steps=20, should_stop=stop)

    assert stopped.value.where == "step 3 of 20" and stop.asked == 3


def test_img2img_frames_stop_between_the_steps_of_a_keyframe(
    text_to_image: TextToImage, key_image: PIL.Image.Image
) -> None:
    img2img = Img2ImgFrames.from_text_to_image(text_to_image)
    stop = StopAfter(3)  # steps=8 at strength 0.25: two steps per keyframe, so keyframe 2's first

    with pytest.raises(Interrupted) as stopped:
        img2img(key_image, "a fox", num_frames=9, fps=8, seed=0, steps=8, strength=0.25, should_stop=stop)

    assert stopped.value.where == "step 1 of 2 on keyframe 2 of 3" and stop.asked == 3


def test_img2img_frames_ask_between_their_in_between_frames_too(
    text_to_image: TextToImage, key_image: PIL.Image.Image
) -> None:
    img2img = Img2ImgFrames.from_text_to_image(text_to_image)
    diffusion_steps = 2 * (keyframe_count(9, 4) - 1)
    stop = StopAfter(diffusion_steps + 5)

    with pytest.raises(Interrupted) as stopped:
        img2img(key_image, "a fox", num_frames=9, fps=8, seed=0, steps=8, strength=0.25, should_stop=stop)

    assert stopped.value.where == "4 of 9 frames"


def test_camera_frames_ask_before_each_keyframe_and_each_frame(key_image: PIL.Image.Image) -> None:
    camera, never = CameraMotionFrames(), StopAfter()

    asked = camera(key_image, num_frames=24, fps=8, seed=0, should_stop=never)

    assert never.asked == keyframe_count(24, 4) + 24
    assert np.array_equal(asked.frames, camera(key_image, num_frames=24, fps=8, seed=0).frames)


@pytest.mark.parametrize(("answers", "where"), [(2, "1 of 7 keyframes"), (7 + 10, "9 of 24 frames")])
def test_camera_frames_stop_where_they_are_told(key_image: PIL.Image.Image, answers: int, where: str) -> None:
    with pytest.raises(Interrupted) as stopped:
        CameraMotionFrames()(key_image, num_frames=24, fps=8, seed=0, should_stop=StopAfter(answers))

    assert stopped.value.where == where


def test_interpolation_stops_between_frames(textured_scene: np.ndarray) -> None:
    stop = StopAfter(4)

    with pytest.raises(Interrupted) as stopped:
        interpolate_frames([textured_scene, np.roll(textured_scene, 6, axis=1)], 30, should_stop=stop)

    assert stopped.value.where == "3 of 30 frames" and stop.asked == 4


def test_encoding_stops_between_frames_and_leaves_no_file(output_dir: pathlib.Path) -> None:
    out_path = output_dir / "stopped.mp4"

    with pytest.raises(Interrupted) as stopped:
        encode_h264(noise_frames(50, 128, 96), 128, 96, 12, out_path, should_stop=StopAfter(11))

    assert stopped.value.where == "10 frames sent to the encoder"
    assert not out_path.exists()


def test_encoding_stops_while_the_encoder_finishes_what_it_was_sent(output_dir: pathlib.Path) -> None:
    out_path = output_dir / "stopped-late.mp4"
    done: list[bool] = []
    # Yes only once every frame is sent: x264 still holds dozens of noisy 720p frames, seconds of work.

    with pytest.raises(Interrupted) as stopped:
        encode_h264(noise_frames(60, 1280, 720, done), 1280, 720, 24, out_path, should_stop=lambda: bool(done))

    assert stopped.value.where == "all 60 frames sent to the encoder"
    assert not out_path.exists()
