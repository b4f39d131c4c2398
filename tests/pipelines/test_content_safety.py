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
from tests.pipelines.conftest import DEFAULT_SAFETY_THRESHOLD


@pytest.fixture(scope="module")
def classifier() -> SafetyClassifier:
    return SafetyClassifier.from_pretrained("opennsfw", device="cpu")


@pytest.fixture(scope="module")
def render(text_to_image: TextToImage) -> PIL.Image.Image:
    return text_to_image(["a fox"], seeds=[0], width=64, height=64, steps=2).images[0]


def test_the_unsafe_image_is_blocked_and_safe_images_pass_at_the_default_threshold(
    classifier: SafetyClassifier, unsafe_image: PIL.Image.Image, landscape: PIL.Image.Image, render: PIL.Image.Image
) -> None:
    unsafe, drawn, rendered = classifier([unsafe_image, landscape, render])
    assert unsafe > DEFAULT_SAFETY_THRESHOLD > max(drawn, rendered)


def test_scores_come_one_per_image_in_input_order_whatever_the_mode(
    classifier: SafetyClassifier, unsafe_image: PIL.Image.Image, landscape: PIL.Image.Image
) -> None:
    scores = classifier([landscape.convert("L"), unsafe_image.convert("RGBA"), landscape])
    assert len(scores) == 3 and all(isinstance(score, float) for score in scores)
    assert scores[1] > DEFAULT_SAFETY_THRESHOLD > max(scores[0], scores[2])


def test_the_model_itself_gives_probabilities_before_any_clamping(
    classifier: SafetyClassifier, unsafe_image: PIL.Image.Image, landscape: PIL.Image.Image, render: PIL.Image.Image
) -> None:
    skin_tone = PIL.Image.new("RGB", (96, 96), (230, 180, 150))
    raw = classifier.scorer([landscape, render, skin_tone, unsafe_image])
    assert len(raw) == 4 and all(0.0 <= score <= 1.0 for score in raw)


def test_no_images_give_no_scores(classifier: SafetyClassifier) -> None:
    assert classifier([]) == []


def test_an_unknown_backend_is_rejected() -> None:
    with pytest.raises(UnknownBackendError, match="no-such-model"):
        SafetyClassifier.from_pretrained("no-such-model")


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


def test_sampled_clip_frames_can_be_scored(classifier: SafetyClassifier, landscape: PIL.Image.Image) -> None:
    clip = CameraMotionFrames("zoom_in")(landscape, num_frames=12, fps=12, seed=0)
    scores = classifier(sample_frames(clip.frames, 4))
    assert len(scores) == 4 and max(scores) < DEFAULT_SAFETY_THRESHOLD
