from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from pipelines.errors import InvalidInputError, UnknownBackendError
from pipelines.frames_camera import CameraMotionFrames
from pipelines.safety import (
    SafetyClassifier,
    sample_frames,
)
from pipelines.text_to_image import TextToImage


@pytest.fixture(scope="module", params=["opennsfw", "nudenet"])
def classifier(request: pytest.FixtureRequest) -> SafetyClassifier:
    return SafetyClassifier.from_pretrained(request.param, device="cpu")


def test_scores_are_probabilities_one_per_image(
    classifier: SafetyClassifier, landscape: PIL.Image.Image, text_to_image: TextToImage
) -> None:
    render = text_to_image(["a fox"], seeds=[0], width=64, height=64, steps=2).images[0]
    skin_tone = PIL.Image.new("RGB", (96, 96), (230, 180, 150))
    scores = classifier([landscape, render, skin_tone, landscape.convert("L")])
    assert len(scores) == 4
    assert all(isinstance(score, float) and 0.0 <= score <= 1.0 for score in scores)


def test_a_landscape_is_scored_safe(classifier: SafetyClassifier, landscape: PIL.Image.Image) -> None:
    assert classifier([landscape])[0] < 0.1


def test_opennsfw_gives_a_graded_score_not_a_constant(landscape: PIL.Image.Image) -> None:
    classifier = SafetyClassifier.from_pretrained("opennsfw")
    scores = classifier([landscape, PIL.Image.new("RGB", (96, 96), (230, 180, 150))])
    assert scores[0] != scores[1] and max(scores) > 0.0


def test_no_images_give_no_scores(classifier: SafetyClassifier) -> None:
    assert classifier([]) == []


def test_an_unknown_backend_is_rejected() -> None:
    with pytest.raises(UnknownBackendError, match="clip"):
        SafetyClassifier.from_pretrained("clip")


def test_sampled_frames_are_evenly_spaced_from_first_to_last() -> None:
    frames = np.stack([np.full((4, 4, 3), index, dtype=np.uint8) for index in range(9)])
    sampled = sample_frames(frames, 3)
    assert [int(np.asarray(image)[0, 0, 0]) for image in sampled] == [0, 4, 8]
    assert all(isinstance(image, PIL.Image.Image) for image in sampled)


def test_sampling_more_frames_than_exist_returns_each_once() -> None:
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert len(sample_frames(frames, 5)) == 2


def test_sampling_rejects_arrays_that_are_not_frames() -> None:
    with pytest.raises(InvalidInputError):
        sample_frames(np.zeros((4, 4, 3), dtype=np.uint8), 2)


def test_sampled_clip_frames_can_be_scored(landscape: PIL.Image.Image) -> None:
    clip = CameraMotionFrames("zoom_in")(landscape, num_frames=12, fps=12, seed=0)
    scores = SafetyClassifier.from_pretrained("opennsfw")(sample_frames(clip.frames, 4))
    assert len(scores) == 4 and max(scores) < 0.1
