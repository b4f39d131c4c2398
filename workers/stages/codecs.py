"""How intermediates are turned into bytes for the object store, and back."""

from __future__ import annotations

import io
import tempfile
import zlib

import numpy as np
from PIL import Image

from storage import ObjectStore
from workers.errors import StageInputMissing
from workers.jobs.messages import StageMessage


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_from_bytes(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def frames_bytes(frames: np.ndarray) -> bytes:
    """(N, H, W, 3) uint8 frames as zlib-compressed .npy: lossless and byte-for-byte repeatable."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(frames, dtype=np.uint8), allow_pickle=False)
    return zlib.compress(buffer.getvalue(), level=3)


def frames_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False)


def read_ref(store: ObjectStore, message: StageMessage, name: str) -> bytes:
    """The bytes an earlier stage stored as ``name``.

    Raises:
      StageInputMissing: the reference or its object is missing (retried: a
        replicated store may not show the object yet).
    """
    key = message.refs.get(name)
    if key is None:
        raise StageInputMissing(f"job {message.job.id}: no {name!r} reference in the message")
    try:
        return store.get_bytes(key)
    except KeyError:
        raise StageInputMissing(f"job {message.job.id}: {name!r} object {key!r} is not in storage") from None


def frames_from_video(data: bytes) -> np.ndarray:
    """Decode an encoded video (mp4) into (N, H, W, 3) RGB uint8 frames with opencv."""
    import cv2

    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(data)
        file.flush()
        capture = cv2.VideoCapture(file.name)
        decoded = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
    if not decoded:
        raise ValueError("video has no decodable frames")
    return np.stack(decoded)
