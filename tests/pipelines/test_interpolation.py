from __future__ import annotations

import numpy as np
import pytest

from pipelines.errors import InvalidInputError
from pipelines.interpolation import interpolate_frames, keyframe_count


def solid(value: int, height: int = 32, width: int = 48) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


@pytest.mark.parametrize("num_frames", [1, 2, 3, 5, 17])
def test_interpolation_returns_the_requested_number_of_frames(num_frames: int) -> None:
    frames = interpolate_frames([solid(0), solid(100), solid(200)], num_frames)
    assert len(frames) == num_frames
    assert all(frame.shape == (32, 48, 3) and frame.dtype == np.uint8 for frame in frames)


def test_the_first_and_last_frames_are_the_first_and_last_keyframes() -> None:
    frames = interpolate_frames([solid(0), solid(100), solid(200)], 9)
    assert np.array_equal(frames[0], solid(0))
    assert np.array_equal(frames[4], solid(100))
    assert np.array_equal(frames[-1], solid(200))


def test_in_between_frames_blend_their_neighbouring_keyframes() -> None:
    frames = interpolate_frames([solid(0), solid(200)], 5)
    assert [int(frame.mean().round()) for frame in frames] == [0, 50, 100, 150, 200]


def test_flow_interpolation_tracks_motion_better_than_a_cross_fade(
    textured_scene: np.ndarray,
) -> None:
    scene = textured_scene
    shift_px = 12
    first, second = scene[:, :256], scene[:, shift_px : 256 + shift_px]
    truth = scene[:, shift_px // 2 : 256 + shift_px // 2].astype(np.float32)
    middle = interpolate_frames([first, second], 3)[1].astype(np.float32)
    cross_fade = (first.astype(np.float32) + second) / 2
    inner = np.s_[:, 16:-16]  # the edges show content that only one keyframe has
    flow_error = np.abs(middle - truth)[inner].mean()
    fade_error = np.abs(cross_fade - truth)[inner].mean()
    assert flow_error < fade_error / 4


@pytest.mark.parametrize(("num_frames", "keyframe_every", "expected"), [(1, 4, 1), (9, 4, 3), (10, 4, 4), (5, 1, 5)])
def test_keyframe_count_covers_first_and_last_frames(num_frames: int, keyframe_every: int, expected: int) -> None:
    assert keyframe_count(num_frames, keyframe_every) == expected


def test_keyframes_of_different_shapes_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        interpolate_frames([solid(0), solid(0, height=16)], 4)


def test_no_keyframes_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        interpolate_frames([], 4)
