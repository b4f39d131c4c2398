"""The prompt screen's normalisation: spelling tricks undone, ordinary prompts left as they mean."""

from __future__ import annotations

import pytest

from queue_config.prompt_screen import normalise

ZWSP = "\u200b"


@pytest.mark.parametrize(
    ("prompt", "normal"),
    [
        ("a n.u.d.e person, gore, beheading", "a nude person, gore, beheading"),
        ("n-u-d-e", "nude"),
        ("n_u_d_e", "nude"),
        ("n*u*d*e", "nude"),
        ("a n u d e woman", "a nude woman"),
        ("g o r e", "gore"),
        ("nuuuuude", "nude"),
        ("goooore", "gore"),
        ("n00d", "nood"),
        ("s3x", "sex"),
        ("g0re", "gore"),
        ("k1ll", "kill"),
        ("n@ked", "naked"),
        ("wh!te p0wer", "white power"),
        ("\uff4e\uff55\uff44\uff45 BEACH", "nude beach"),  # fullwidth
        ("n\u0430ked", "naked"),  # Cyrillic a
        ("t\u043epless", "topless"),  # Cyrillic o
        ("\u039dude", "nude"),  # Greek capital Nu
        ("\u0274\u1d1c\u1d05\u1d07", "nude"),  # small capitals
        (f"n{ZWSP}u{ZWSP}d{ZWSP}e", "nude"),
        ("caf\u00e9 cr\u00e8me", "cafe creme"),
    ],
)
def test_spelling_tricks_are_undone(prompt: str, normal: str) -> None:
    assert normalise(prompt) == normal


@pytest.mark.parametrize(
    "prompt",
    ["a 4k photo of a 12 year old's birthday party", "a 13-year-old with a 3d printer", "a 1950s diner",
     "a 9yo and a 4x4 truck", "a fox in the snow, 35mm"],
)
def test_numbers_stay_numbers(prompt: str) -> None:
    assert normalise(prompt) == prompt


def test_a_word_in_another_script_is_left_alone() -> None:
    assert normalise("\u043a\u043e\u0448\u043a\u0430 on a sofa") == "\u043a\u043e\u0448\u043a\u0430 on a sofa"


def test_a_stretched_word_is_cut_back_to_the_spelling_the_vocabulary_knows() -> None:
    assert normalise("killlll, bloooody") == "kil, blody"
    assert normalise("killlll, bloooody", vocabulary={"kill", "bloody"}) == "kill, bloody"


def test_ordinary_punctuation_and_initials_survive() -> None:
    assert normalise("A Fox, e.g. red; at dawn!") == "a fox, e.g. red; at dawn!"
