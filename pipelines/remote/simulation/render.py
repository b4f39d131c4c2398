"""What the simulator "generates": deterministic images and text derived from the request.

The same prompt and seed always give the same bytes and different ones almost always differ,
so tests can check seeding without a model.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import PIL.Image

#: Words the simulated language model strings together.
VOCABULARY = (
    "golden hour light",
    "soft mist",
    "wide angle",
    "dramatic clouds",
    "rim lighting",
    "shallow depth of field",
    "reflections on water",
    "muted palette",
    "high contrast",
    "distant mountains",
    "neon glow",
    "overcast sky",
    "low angle",
    "cinematic framing",
    "warm tones",
    "long shadows",
    "morning dew",
    "city lights",
)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()


def render_png(prompt: str, seed: int, width: int, height: int) -> bytes:
    """Return a ``width`` x ``height`` PNG: a diagonal gradient between two colours from the prompt and seed."""
    digest = _digest(prompt, seed)
    start = np.array(list(digest[0:3]), dtype=np.float32)
    end = np.array(list(digest[3:6]), dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs / max(width - 1, 1) + ys / max(height - 1, 1)) / 2
    pixels = start + (end - start) * t[..., None]
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels.round().astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def render_text(prompt: str, seed: int, max_tokens: int) -> str:
    """Return a comma-separated phrase of at most ``max_tokens`` words chosen by the prompt and seed."""
    digest = _digest(prompt, seed)
    phrases = [VOCABULARY[byte % len(VOCABULARY)] for byte in digest[:3]]
    words = ", ".join(dict.fromkeys(phrases)).split(" ")
    return " ".join(words[: max(1, max_tokens)])
