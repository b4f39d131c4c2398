from __future__ import annotations

import pathlib
from collections.abc import Iterator

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from pipelines.errors import InvalidInputError, VideoEncodeError
from pipelines.video_encode import encode_h264

WIDTH, HEIGHT, FPS = 128, 96, 12


def moving_square(num_frames: int) -> Iterator[np.ndarray]:
    """Yield frames one at a time, as a frame backend streaming its output would."""
    for index in range(num_frames):
        frame = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
        frame[30:60, 4 * index : 4 * index + 30] = (250, 200, 20)
        yield frame


def test_encoded_video_is_h264_with_every_frame(output_dir: pathlib.Path) -> None:
    info = encode_h264(moving_square(24), WIDTH, HEIGHT, FPS, output_dir / "clip.mp4")

    assert info.path == output_dir / "clip.mp4"
    assert (info.num_frames, info.fps) == (24, FPS)
    assert info.size_bytes == info.path.stat().st_size > 0
    num_frames, duration_s = imageio_ffmpeg.count_frames_and_secs(str(info.path))
    assert num_frames == 24
    assert duration_s == pytest.approx(24 / FPS, abs=0.1)
    capture = cv2.VideoCapture(str(info.path))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    assert fourcc in {"avc1", "h264"}
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    assert len(decoded) == 24 and decoded[0].shape == (HEIGHT, WIDTH, 3)


def test_decoded_frames_look_like_the_input(output_dir: pathlib.Path) -> None:
    frames = list(moving_square(6))
    info = encode_h264(iter(frames), WIDTH, HEIGHT, FPS, output_dir / "clip.mp4", crf=18)
    capture = cv2.VideoCapture(str(info.path))
    ok, first_bgr = capture.read()
    capture.release()
    assert ok
    first_rgb = cv2.cvtColor(first_bgr, cv2.COLOR_BGR2RGB).astype(np.int16)
    assert np.abs(first_rgb - frames[0]).mean() < 4


def test_the_index_is_at_the_front_for_streaming_playback(output_dir: pathlib.Path) -> None:
    info = encode_h264(moving_square(8), WIDTH, HEIGHT, FPS, output_dir / "clip.mp4")
    data = info.path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_a_frame_of_the_wrong_shape_raises_and_leaves_no_file(output_dir: pathlib.Path) -> None:
    frames = [*moving_square(3), np.zeros((HEIGHT, WIDTH + 2, 3), dtype=np.uint8)]
    with pytest.raises(InvalidInputError, match="frame 3"):
        encode_h264(iter(frames), WIDTH, HEIGHT, FPS, output_dir / "clip.mp4")
    assert not (output_dir / "clip.mp4").exists()


@pytest.mark.parametrize(("width", "height"), [(127, 96), (128, 0)])
def test_sizes_yuv420p_cannot_hold_are_rejected(output_dir: pathlib.Path, width: int, height: int) -> None:
    with pytest.raises(InvalidInputError):
        encode_h264(moving_square(2), width, height, FPS, output_dir / "clip.mp4")


def test_no_frames_is_an_error(output_dir: pathlib.Path) -> None:
    with pytest.raises(InvalidInputError, match="no frames"):
        encode_h264(iter([]), WIDTH, HEIGHT, FPS, output_dir / "clip.mp4")


def test_an_ffmpeg_failure_carries_its_stderr(output_dir: pathlib.Path) -> None:
    occupied = output_dir / "clip.mp4"
    occupied.mkdir()  # ffmpeg cannot write a file where a directory is
    with pytest.raises(VideoEncodeError, match="ffmpeg exited with code") as raised:
        encode_h264(moving_square(4), WIDTH, HEIGHT, FPS, occupied)
    assert "clip.mp4" in str(raised.value).split("\n", 1)[1]
