"""Shared fixtures for the pipeline tests: the tiny model profile and images to feed it.

The tiny profile is built once per test session into a temporary directory, exactly as a
worker builds it into its cache, so the tests also exercise the offline build.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pathlib

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest

from pipelines.profiles import ModelProfile, resolve_profile
from pipelines.prompt_enhance import PromptEnhancer
from pipelines.text_to_image import TextToImage


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
