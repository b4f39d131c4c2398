"""Shared fixtures for the pipeline tests: the tiny model profile and images to feed it.

The tiny profile is built once per test session into a temporary directory, exactly as a
worker builds it into its cache, so the tests also exercise the offline build. The image the
safety classifier must block is built here too, by searching against the real classifier.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import functools
import pathlib

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest

from pipelines.profiles import ModelProfile, resolve_profile
from pipelines.prompt_enhance import PromptEnhancer
from pipelines.safety import SafetyClassifier
from pipelines.text_to_image import TextToImage
from queue_config.settings import Settings

#: The product's blocking threshold as shipped (``FRAMEQUEUE_SAFETY_THRESHOLD`` unset).
DEFAULT_SAFETY_THRESHOLD: float = Settings.model_fields["safety_threshold"].default
#: How far above that threshold the built unsafe image must score, so that small numeric
#: differences between machines (CPU instruction sets, thread counts) cannot carry it back under.
UNSAFE_MARGIN = 0.1
#: The search's budget: rounds of changes, each scored as one batch of this many candidates.
UNSAFE_SEARCH_ROUNDS = 40
UNSAFE_SEARCH_BATCH = 16
#: Fixed, so every run climbs the same path to the same image.
UNSAFE_SEARCH_SEED = 5
#: The side of the grid of colours the search changes, and of the image it is upsampled to.
UNSAFE_GRID_CELLS = 8
UNSAFE_IMAGE_PX = 224


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory: pytest.TempPathFactory) -> ModelProfile:
    return resolve_profile("tiny", tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def text_to_image(tiny_profile: ModelProfile) -> TextToImage:
    return TextToImage.from_pretrained(tiny_profile.image_model, device="cpu")


@pytest.fixture(scope="session")
def prompt_enhancer(tiny_profile: ModelProfile) -> PromptEnhancer:
    return PromptEnhancer.from_pretrained(tiny_profile.text_model, tiny_profile.embedding_model, device="cpu")


def draw_landscape(width: int = 256, height: int = 192) -> PIL.Image.Image:
    """A simple drawn landscape (sky, sun, mountain, grass): a stand-in for a real render."""
    image = PIL.Image.new("RGB", (width, height))
    draw = PIL.ImageDraw.Draw(image)
    horizon = height // 2
    for y in range(horizon):
        draw.line([(0, y), (width, y)], fill=(80 + y // 2, 140 + y // 3, 235))
    draw.rectangle([0, horizon, width, height], fill=(60, 150, 60))
    draw.ellipse([width - 70, 15, width - 30, 55], fill=(250, 220, 90))
    draw.polygon([(20, horizon), (90, 30), (160, horizon)], fill=(110, 110, 120))
    return image


def grid_image(grid: np.ndarray) -> PIL.Image.Image:
    """A ``(cells, cells, 3)`` grid of colours, upsampled smoothly to a square RGB image."""
    cells = PIL.Image.fromarray(grid.round().clip(0, 255).astype(np.uint8))
    return cells.resize((UNSAFE_IMAGE_PX, UNSAFE_IMAGE_PX), PIL.Image.Resampling.BICUBIC)


@functools.cache
def build_unsafe_image() -> PIL.Image.Image:
    """An image the real OpenNSFW classifier scores above the product's threshold, built offline.

    No NSFW imagery ships with the tests, and none is wanted, so this one is found: a seeded hill
    climb over a small grid of colours, starting from a flat skin tone (which scores about 0.25).
    Each round scores a batch of copies of the best grid with a few cells changed at random and
    keeps the best, until the score clears ``DEFAULT_SAFETY_THRESHOLD + UNSAFE_MARGIN``. It scores
    through :class:`SafetyClassifier`, as the safety stage does. Cached, so it runs once per test
    process: with this seed, three rounds (49 images scored), a few seconds on two cores.

    Raises:
        AssertionError: The budget ran out first (the message gives the best score reached).
    """
    classifier = SafetyClassifier.from_pretrained("opennsfw", device="cpu")
    target = DEFAULT_SAFETY_THRESHOLD + UNSAFE_MARGIN
    rng = np.random.default_rng(UNSAFE_SEARCH_SEED)
    best = np.tile(np.array([230.0, 180.0, 150.0]), (UNSAFE_GRID_CELLS, UNSAFE_GRID_CELLS, 1))
    best_score = classifier([grid_image(best)])[0]
    for _ in range(UNSAFE_SEARCH_ROUNDS):
        if best_score >= target:
            return grid_image(best)
        candidates = [changed_cells(best, rng) for _ in range(UNSAFE_SEARCH_BATCH)]
        scores = classifier([grid_image(grid) for grid in candidates])
        if max(scores) > best_score:
            best_score, best = max(zip(scores, candidates, strict=True), key=lambda pair: pair[0])
    assert best_score >= target, (
        f"no image scored {target:.2f} within {UNSAFE_SEARCH_ROUNDS} rounds (best {best_score:.3f})"
    )
    return grid_image(best)


def changed_cells(grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``grid`` with one to three random cells moved in colour (a step of the search)."""
    changed = grid.copy()
    for _ in range(rng.integers(1, 4)):
        row, column = rng.integers(0, len(grid), 2)
        changed[row, column] += rng.normal(0.0, 40.0, 3)
    return np.clip(changed, 0.0, 255.0)


@pytest.fixture(scope="session")
def unsafe_image() -> PIL.Image.Image:
    return build_unsafe_image()


@pytest.fixture
def textured_scene() -> np.ndarray:
    """A 320x192 smooth random texture: every region is distinct, so optical flow can track it."""
    noise = np.random.default_rng(0).integers(0, 256, (192, 320, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 3).astype(np.float32)
    stretched = (blurred - blurred.min()) * 255 / (blurred.max() - blurred.min())
    return stretched.round().astype(np.uint8)


@pytest.fixture
def landscape() -> PIL.Image.Image:
    return draw_landscape()


@pytest.fixture
def output_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path
