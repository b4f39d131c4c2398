"""The remote stage backends: the local backends' call shapes and outputs, over the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.errors import InvalidInputError
from pipelines.outputs import EnhancedPrompt, ImageOutput
from pipelines.prompt_text import clean_continuation
from pipelines.remote import (
    ProviderClient,
    ProviderSimulator,
    RemotePromptEnhancer,
    RemoteTextToImage,
    StaticKeyProvider,
    key_fingerprint,
)
from tests.pipelines.remote.conftest import KEY_A, KEY_B


@pytest.fixture
def keys() -> StaticKeyProvider:
    return StaticKeyProvider([KEY_A, KEY_B])


def test_text_to_image_returns_one_image_per_prompt_in_order(client: ProviderClient, keys: StaticKeyProvider) -> None:
    backend = RemoteTextToImage(client, "framequeue/sim-image", keys)
    output = backend(["a fox", "a owl", "a fox"], seeds=[1, 2, 1], width=64, height=40, steps=2)
    assert isinstance(output, ImageOutput)
    assert [image.size for image in output.images] == [(64, 40)] * 3
    first, second, third = (np.asarray(image) for image in output.images)
    assert np.array_equal(first, third) and not np.array_equal(first, second)


def test_text_to_image_fails_over_between_keys_within_a_batch(
    client: ProviderClient, keys: StaticKeyProvider, simulator: ProviderSimulator
) -> None:
    simulator.revoke(KEY_A)
    output = RemoteTextToImage(client, "framequeue/sim-image", keys, max_concurrency=1)(
        ["a", "b"], seeds=[0, 1], width=32, height=32, steps=1
    )
    assert len(output.images) == 2
    assert simulator.stats()[key_fingerprint(KEY_B)]["accepted"] == 2


@pytest.mark.parametrize(
    ("prompts", "seeds", "width", "steps"),
    [([], [], 64, 1), (["a"], [1, 2], 64, 1), (["a"], [1], 60, 1), (["a"], [1], 64, 0)],
    ids=["no prompts", "seed count", "width not a multiple of 8", "no steps"],
)
def test_text_to_image_checks_inputs_before_calling_out(
    client: ProviderClient,
    keys: StaticKeyProvider,
    simulator: ProviderSimulator,
    prompts: list[str],
    seeds: list[int],
    width: int,
    steps: int,
) -> None:
    with pytest.raises(InvalidInputError):
        RemoteTextToImage(client, "m", keys)(prompts, seeds, width=width, height=64, steps=steps)
    assert simulator.stats() == {}


def test_the_enhancer_extends_the_prompt_deterministically(client: ProviderClient, keys: StaticKeyProvider) -> None:
    enhancer = RemotePromptEnhancer(client, "framequeue/sim-text", keys)
    result = enhancer("  a fox   in snow ", seed=3, max_new_tokens=8)
    assert isinstance(result, EnhancedPrompt)
    assert result.prompt.startswith("a fox in snow, ") and result.continuation
    assert result.modifiers == []
    assert enhancer("a fox in snow", seed=3, max_new_tokens=8) == result


def test_the_enhancer_adds_modifiers_from_a_given_retriever_within_the_bound(
    client: ProviderClient, keys: StaticKeyProvider
) -> None:
    enhancer = RemotePromptEnhancer(
        client, "m", keys, retrieve_modifiers=lambda prompt: ["watercolor", "snow"], max_prompt_chars=60
    )
    result = enhancer("a fox in snow", seed=1)
    assert result.modifiers == ["watercolor", "snow"]
    assert len(result.prompt) <= 60 and result.prompt.count("snow") == 1


def test_the_enhancer_refuses_an_empty_prompt(client: ProviderClient, keys: StaticKeyProvider) -> None:
    with pytest.raises(InvalidInputError):
        RemotePromptEnhancer(client, "m", keys)("   ", seed=0)


def test_a_reply_is_cleaned_to_one_unquoted_line() -> None:
    assert clean_continuation('\n "golden light, soft mist." \nsecond line') == "golden light, soft mist"
