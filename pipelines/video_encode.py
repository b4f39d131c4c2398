"""Video encoding: stream RGB frames into ffmpeg and get back a web-playable H.264 MP4.

Frames are piped to ffmpeg's stdin as raw RGB, one at a time, so a clip never exists as a
folder of images and memory stays flat however long it is. The output is H.264 in yuv420p
(the pixel format every browser and phone decodes) with the index at the front of the file
(``+faststart``), so playback starts before the download ends.
"""

from __future__ import annotations

import pathlib
import subprocess
import threading
from collections.abc import Iterable

import ffmpeg
import imageio_ffmpeg
import numpy as np

from pipelines.errors import InvalidInputError, ShouldStop, VideoEncodeError, stop_if_asked
from pipelines.outputs import VideoInfo

#: Default constant rate factor: 23 is x264's default, visually good at modest size.
DEFAULT_CRF = 23
#: How much of ffmpeg's stderr an error message carries, in characters.
STDERR_TAIL_CHARS = 2000
#: How often ``should_stop`` is asked while ffmpeg encodes the frames it already has.
STOP_POLL_S = 0.1


def encode_h264(
    frames: Iterable[np.ndarray],
    width: int,
    height: int,
    fps: int,
    out_path: pathlib.Path,
    crf: int = DEFAULT_CRF,
    should_stop: ShouldStop | None = None,
) -> VideoInfo:
    """Encode ``frames`` (each ``(height, width, 3)`` uint8 RGB) to an H.264 MP4 at ``out_path``.

    ``should_stop`` is asked before each frame is sent, and every ``STOP_POLL_S`` while ffmpeg
    finishes the frames it has (the encoder holds a few dozen).

    Raises:
        InvalidInputError: if a side is odd (yuv420p needs even sides), ``fps`` < 1, a frame
            has the wrong shape or dtype, or there are no frames.
        VideoEncodeError: if ffmpeg fails; the message ends with ffmpeg's stderr.
        Interrupted: when ``should_stop`` said stop; ffmpeg is killed and no file is left.
    """
    # 1. Check inputs.
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise InvalidInputError(f"width and height must be positive and even, got {width}x{height}")
    if fps < 1:
        raise InvalidInputError(f"fps must be at least 1, got {fps}")
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # 2. Start ffmpeg, reading raw frames from stdin; drain stderr so it never blocks.
    process = _start_ffmpeg(width, height, fps, out_path, crf)
    stderr_chunks: list[bytes] = []
    drainer = threading.Thread(target=_drain, args=(process.stderr, stderr_chunks), daemon=True)
    drainer.start()
    # 3. Stream the frames and let ffmpeg finish; on any failure, leave no partial file behind.
    num_frames = 0
    stdin = process.stdin
    assert stdin is not None  # run_async(pipe_stdin=True) always opens it
    try:
        try:
            for frame in frames:
                stop_if_asked(should_stop, f"{num_frames} frames sent to the encoder")
                _check_frame(frame, width, height, num_frames)
                stdin.write(np.ascontiguousarray(frame).tobytes())
                num_frames += 1
        except BrokenPipeError:
            pass  # ffmpeg exited early; its exit code and stderr say why
        _close_quietly(process, should_stop, f"all {num_frames} frames sent to the encoder")
    except BaseException:
        process.kill()
        _close_quietly(process)
        drainer.join()
        _remove_partial(out_path)
        raise
    drainer.join()
    # 4. Report.
    stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
    if num_frames == 0 or process.returncode != 0:
        _remove_partial(out_path)
    if num_frames == 0:
        raise InvalidInputError("no frames to encode")
    if process.returncode != 0:
        raise VideoEncodeError(
            f"ffmpeg exited with code {process.returncode} encoding {out_path}:\n{stderr[-STDERR_TAIL_CHARS:]}"
        )
    return VideoInfo(out_path, num_frames, fps, out_path.stat().st_size)


def _start_ffmpeg(width: int, height: int, fps: int, out_path: pathlib.Path, crf: int) -> subprocess.Popen[bytes]:
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
    stream = ffmpeg.output(
        stream, str(out_path), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=crf, r=fps, movflags="+faststart"
    )
    stream = ffmpeg.overwrite_output(stream).global_args("-hide_banner", "-loglevel", "error")
    process: subprocess.Popen[bytes] = stream.run_async(
        cmd=imageio_ffmpeg.get_ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True
    )
    return process


def _check_frame(frame: np.ndarray, width: int, height: int, index: int) -> None:
    if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
        raise InvalidInputError(f"frame {index} is {frame.shape} {frame.dtype}; expected ({height}, {width}, 3) uint8")


def _remove_partial(path: pathlib.Path) -> None:
    """Delete what ffmpeg wrote at ``path``, if anything; never a directory."""
    if path.is_file():
        path.unlink()


def _drain(pipe: object, chunks: list[bytes]) -> None:
    for chunk in iter(lambda: pipe.read(4096), b""):  # type: ignore[attr-defined]
        chunks.append(chunk)


def _close_quietly(process: subprocess.Popen[bytes], should_stop: ShouldStop | None = None, where: str = "") -> None:
    """Close ffmpeg's stdin (ending its input) and wait for it to exit, asking ``should_stop`` as it works."""
    try:
        if process.stdin is not None:
            process.stdin.close()
    except BrokenPipeError:
        pass
    while True:
        try:
            process.wait(STOP_POLL_S if should_stop is not None else None)
            return
        except subprocess.TimeoutExpired:
            stop_if_asked(should_stop, where)
