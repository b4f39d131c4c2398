from __future__ import annotations

import threading

import numpy as np
import pytest

from pipelines.errors import InvalidInputError
from pipelines.text_to_image import TextToImage


def pixels(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_a_batch_of_two_gives_two_images_of_the_requested_size(text_to_image: TextToImage) -> None:
    output = text_to_image(["a fox", "a cat"], seeds=[1, 2], width=64, height=96, steps=2)
    assert [image.size for image in output.images] == [(64, 96), (64, 96)]
    assert all(image.mode == "RGB" for image in output.images)


def test_same_seed_gives_identical_image(text_to_image: TextToImage) -> None:
    first = text_to_image(["a fox"], seeds=[42], width=64, height=96, steps=2).images[0]
    second = text_to_image(["a fox"], seeds=[42], width=64, height=96, steps=2).images[0]
    assert np.array_equal(pixels(first), pixels(second))


def test_different_seeds_give_different_images(text_to_image: TextToImage) -> None:
    output = text_to_image(["a fox", "a fox"], seeds=[1, 2], width=64, height=96, steps=2)
    difference = np.abs(pixels(output.images[0]) - pixels(output.images[1])).mean()
    assert difference > 1.0


def test_an_image_depends_on_its_own_seed_not_its_batch(text_to_image: TextToImage) -> None:
    alone = text_to_image(["a fox"], seeds=[5], width=64, height=64, steps=2).images[0]
    batched = text_to_image(["a fox", "a cat"], seeds=[5, 6], width=64, height=64, steps=2)
    # Batched matrix maths may round differently, so allow a pixel level or two.
    assert np.abs(pixels(alone) - pixels(batched.images[0])).max() <= 2


def test_full_size_images_render_on_cpu(text_to_image: TextToImage) -> None:
    output = text_to_image(["a castle"], seeds=[0], width=512, height=512, steps=1)
    assert output.images[0].size == (512, 512)


def test_classifier_free_guidance_with_a_negative_prompt_runs(text_to_image: TextToImage) -> None:
    plain = text_to_image(["a fox"], seeds=[3], width=64, height=64, steps=2).images[0]
    guided = text_to_image(
        ["a fox"],
        seeds=[3],
        width=64,
        height=64,
        steps=2,
        negative_prompt="blurry",
        guidance_scale=4.0,
    ).images[0]
    assert guided.size == (64, 64)
    assert not np.array_equal(pixels(plain), pixels(guided))


@pytest.mark.parametrize(("width", "height"), [(60, 64), (64, 0), (-8, 64)])
def test_sizes_that_are_not_positive_multiples_of_8_are_rejected(
    text_to_image: TextToImage, width: int, height: int
) -> None:
    with pytest.raises(InvalidInputError):
        text_to_image(["a fox"], seeds=[1], width=width, height=height, steps=1)


def test_each_prompt_needs_exactly_one_seed(text_to_image: TextToImage) -> None:
    with pytest.raises(InvalidInputError, match="one seed per prompt"):
        text_to_image(["a fox", "a cat"], seeds=[1], width=64, height=64, steps=1)


def test_components_are_exposed_for_reuse(text_to_image: TextToImage) -> None:
    components = text_to_image.components
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(components)
    assert components["unet"] is text_to_image.pipeline.unet


def test_concurrent_calls_from_worker_threads_match_sequential_ones(text_to_image: TextToImage) -> None:
    def render(seed: int) -> np.ndarray:
        return pixels(text_to_image(["a fox"], seeds=[seed], width=64, height=64, steps=3).images[0])

    expected = {seed: render(seed) for seed in (11, 12, 13)}
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda s=seed: results.__setitem__(s, render(s))) for seed in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(results[seed], expected[seed]) for seed in expected)
