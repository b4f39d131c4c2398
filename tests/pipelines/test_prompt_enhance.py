from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from pipelines.errors import InvalidInputError
from pipelines.profiles import ModelProfile
from pipelines.prompt_enhance import PromptEnhancer
from pipelines.prompt_text import MAX_PROMPT_CHARS, SYSTEM_PROMPT, trim_words


def test_same_seed_gives_the_same_enhanced_prompt(prompt_enhancer: PromptEnhancer) -> None:
    first = prompt_enhancer("a lighthouse on a cliff", seed=7)
    second = prompt_enhancer("a lighthouse on a cliff", seed=7)
    assert first == second
    assert first.continuation  # the tiny LM does add something


def test_different_seeds_give_different_continuations(prompt_enhancer: PromptEnhancer) -> None:
    continuations = {prompt_enhancer("a fox", seed=seed).continuation for seed in range(3)}
    assert len(continuations) == 3


def test_enhanced_prompt_is_the_original_then_continuation_then_modifiers(
    prompt_enhancer: PromptEnhancer,
) -> None:
    result = prompt_enhancer("a fox", seed=1)
    assert result.prompt.startswith("a fox, ")
    assert result.continuation in result.prompt
    assert len(result.modifiers) == 3
    assert result.prompt.endswith(result.modifiers[-1])


@pytest.mark.parametrize(
    ("prompt", "expected_first"),
    [
        ("a watercolor painting of a fox", "watercolor"),
        ("a neon city street at night", "neon-lit night"),
        ("a castle under a thunderstorm", "dramatic storm clouds"),
    ],
)
def test_modifiers_are_ranked_by_meaning(prompt_enhancer: PromptEnhancer, prompt: str, expected_first: str) -> None:
    assert prompt_enhancer(prompt, seed=0).modifiers[0] == expected_first


def test_modifiers_the_prompt_already_has_are_not_repeated(prompt_enhancer: PromptEnhancer) -> None:
    result = prompt_enhancer("a watercolor painting of a fox", seed=0)
    assert result.prompt.lower().count("watercolor") == 1


def test_a_long_prompt_is_bounded_and_keeps_its_start(prompt_enhancer: PromptEnhancer) -> None:
    long_prompt = " ".join(["a quiet forest of tall old trees"] * 25)
    result = prompt_enhancer(long_prompt, seed=3)
    assert len(result.prompt) <= MAX_PROMPT_CHARS
    assert result.prompt.startswith("a quiet forest of tall old trees a quiet forest")


def test_an_empty_prompt_is_rejected(prompt_enhancer: PromptEnhancer) -> None:
    with pytest.raises(InvalidInputError):
        prompt_enhancer("   ", seed=0)


def test_continuations_are_cleaned_to_one_bounded_line() -> None:
    clean = PromptEnhancer.clean_continuation
    assert clean('\n  "misty hills at dawn",\nSure! Here is more') == "misty hills at dawn"
    assert clean("golden light<|im_end|> over   the bay.") == "golden light over the bay"
    assert clean("") == ""
    assert len(clean("word " * 100)) <= 160


def test_a_chat_template_is_used_when_the_tokenizer_has_one(
    prompt_enhancer: PromptEnhancer, tiny_profile: ModelProfile
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_profile.text_model)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    chat = PromptEnhancer(prompt_enhancer.model, tokenizer, prompt_enhancer.embedder)
    inputs = chat._model_inputs("a red fox")
    text = str(tokenizer.decode(inputs["input_ids"][0]))
    assert "system" in text and "a red fox" in text and text.endswith("assistant :")
    assert SYSTEM_PROMPT.split()[1].lower() in text
    assert chat("a red fox", seed=5) == chat("a red fox", seed=5)


def test_modifiers_are_dropped_before_the_prompt_is_cut(prompt_enhancer: PromptEnhancer) -> None:
    bounded = PromptEnhancer(
        prompt_enhancer.model, prompt_enhancer.tokenizer, prompt_enhancer.embedder, max_prompt_chars=40
    )
    result = bounded("a neon city street at night", seed=0)
    assert len(result.prompt) <= 40
    assert result.prompt.startswith("a neon city street at night")
    assert len(result.modifiers) == 3  # still reported, even when they did not fit


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [("short", 10, "short"), ("golden light over the bay", 14, "golden light"), ("unbroken", 4, "unbr")],
)
def test_trim_words_cuts_at_a_word_boundary(text: str, max_chars: int, expected: str) -> None:
    assert trim_words(text, max_chars) == expected
