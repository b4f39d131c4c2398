from __future__ import annotations

import itertools

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest

from pipelines.errors import InvalidInputError, UnknownBackendError
from pipelines.frames_camera import MOTIONS, CameraMotionFrames

WIDTH, HEIGHT = 160, 128


def target_image() -> PIL.Image.Image:
    """Grey background with a red disc in the middle and a blue bar left of it."""
    image = PIL.Image.new("RGB", (WIDTH, HEIGHT), (128, 128, 128))
    draw = PIL.ImageDraw.Draw(image)
    draw.ellipse([WIDTH // 2 - 20, HEIGHT // 2 - 20, WIDTH // 2 + 20, HEIGHT // 2 + 20], fill=(220, 30, 30))
    draw.rectangle([40, 20, 50, HEIGHT - 20], fill=(30, 30, 220))
    return image


def red_area_px(frame: np.ndarray) -> int:
    return int(((frame[..., 0] > 180) & (frame[..., 1] < 80)).sum())


def blue_center_x_px(frame: np.ndarray) -> float:
    _, xs = np.nonzero((frame[..., 2] > 180) & (frame[..., 0] < 80))
    return float(xs.mean())


@pytest.mark.parametrize("motion", MOTIONS)
def test_camera_frames_have_the_requested_count_shape_and_fps(motion: str) -> None:
    output = CameraMotionFrames(motion)(target_image(), num_frames=13, fps=12, seed=0)
    assert output.frames.shape == (13, HEIGHT, WIDTH, 3)
    assert output.frames.dtype == np.uint8
    assert output.fps == 12


def test_zoom_in_makes_the_subject_grow_and_zoom_out_shrink() -> None:
    zoom_in = CameraMotionFrames("zoom_in")(target_image(), num_frames=25, fps=12, seed=0).frames
    zoom_out = CameraMotionFrames("zoom_out")(target_image(), num_frames=25, fps=12, seed=0).frames
    assert red_area_px(zoom_in[-1]) > 1.4 * red_area_px(zoom_in[0])
    assert red_area_px(zoom_out[-1]) < red_area_px(zoom_out[0]) / 1.4


def test_panning_right_moves_the_scene_left_and_panning_left_moves_it_right() -> None:
    right = CameraMotionFrames("pan_right")(target_image(), num_frames=25, fps=12, seed=0).frames
    left = CameraMotionFrames("pan_left")(target_image(), num_frames=25, fps=12, seed=0).frames
    assert blue_center_x_px(right[-1]) < blue_center_x_px(right[0]) - 10
    assert blue_center_x_px(left[-1]) > blue_center_x_px(left[0]) + 10


def test_camera_motion_moves_steadily_through_the_in_between_frames() -> None:
    frames = CameraMotionFrames("zoom_in")(target_image(), num_frames=17, fps=8, seed=0).frames
    areas = [red_area_px(frame) for frame in frames]
    assert all(later >= earlier * 0.97 for earlier, later in itertools.pairwise(areas))


def test_the_seed_moves_the_focus_and_is_repeatable() -> None:
    camera = CameraMotionFrames("zoom_in")
    first = camera(target_image(), num_frames=5, fps=4, seed=1).frames
    again = camera(target_image(), num_frames=5, fps=4, seed=1).frames
    other = camera(target_image(), num_frames=5, fps=4, seed=2).frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first[-1], other[-1])


def test_an_unknown_motion_is_rejected() -> None:
    with pytest.raises(UnknownBackendError, match="spin"):
        CameraMotionFrames("spin")


def test_zero_frames_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        CameraMotionFrames()(target_image(), num_frames=0, fps=12, seed=0)
