from __future__ import annotations

import pytest

from queue_config.prompt_screen import DEFAULT_BLOCKED_TERMS, screen_prompt


@pytest.mark.parametrize("prompt", ["a NUDE figure", "nude", "an explicit   sex scene", "Naked!"])
def test_screen_prompt_blocks_terms_as_whole_words_ignoring_case(prompt: str) -> None:
    reason = screen_prompt(prompt, DEFAULT_BLOCKED_TERMS)
    assert reason is not None and reason.startswith("prompt blocked at submission: contains blocked term '")


@pytest.mark.parametrize("prompt", ["a fox in the snow", "denuded hills", "an explicit sextant"])
def test_screen_prompt_allows_prompts_without_blocked_words(prompt: str) -> None:
    assert screen_prompt(prompt, DEFAULT_BLOCKED_TERMS) is None


def test_screen_prompt_names_the_term_it_found() -> None:
    assert screen_prompt("a Gore-free scene", ["gore"]) == "prompt blocked at submission: contains blocked term 'gore'"
    assert screen_prompt("a scene", []) is None
