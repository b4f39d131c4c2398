"""Undoing the spelling tricks that walk a prompt around a safety screen.

A screen that reads words is only as good as the words it is shown: "a n.u.d.e person",
"nuuuude", "n00d", "nude" in fullwidth letters and "nude" with a Cyrillic "e" all mean the same to a
text-to-image model. :func:`normalise` turns each of them back into plain lower-case
English before the semantic screen (``pipelines.prompt_safety``) reads the prompt:

1. Unicode NFKC, which folds fullwidth and other compatibility forms (fullwidth letters);
   invisible format characters (zero-width spaces and joiners) are dropped.
2. Look-alike letters: in a word made only of Latin letters and letters confusable with
   them, each look-alike becomes its Latin letter (Unicode's confusables, through the
   ``confusable_homoglyphs`` package; small capitals by their Unicode name); accents are
   stripped. Words in another script are left alone.
3. Digits and symbols inside words ("n00d", "s3x", "k1ll", "n@ked") become the letters they
   stand for; plain numbers ("12 year old", "4k") stay numbers.
4. Letters spelled apart ("n.u.d.e", "n-u-d-e", "n_u_d_e", "n u d e") are joined.
5. A letter stretched three times or more ("nuuuude", "killlll") is cut back to the spelling
   a vocabulary knows, else to one letter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container
from functools import lru_cache
from itertools import product

from confusable_homoglyphs import confusables

#: Digits and symbols that stand for letters inside a word.
LEET: dict[str, str] = {
    "0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l",
}
#: A number with a unit or an ordinal is a number, not leetspeak ("4k", "1080p", "3d", "21st", "12yo").
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?(?:k|px|p|d|s|x|mm|cm|m|fps|th|st|nd|rd|yo|yr|yrs|h|am|pm)?")
#: Single letters apart by dots, hyphens, underscores and the like ("n.u.d.e", "g-o-r-e").
_SPELLED_APART = re.compile(r"(?<![a-z])[a-z](?:[._\-*~/\\·•:,'+=]+[a-z](?![a-z])){2,}")
#: Single letters apart by single spaces ("n u d e"); at least three.
_SPACED_OUT = re.compile(r"(?<![a-z])[a-z](?: [a-z](?![a-z])){2,}")
_STRETCHED = re.compile(r"([a-z])\1{2,}")
#: Words with a leading article: "a n u d e person" joins to "a nude", not "anude".
_ARTICLES = ("a", "i")


def normalise(text: str, vocabulary: Container[str] = frozenset()) -> str:
    """``text`` in plain lower-case letters, with the tricks above undone.

    ``vocabulary`` (whole words, lower case) decides how a stretched word is cut back:
    "killlll" becomes "kill" when "kill" is in it. Without one, runs become one letter.
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(_latin_word(word) for word in text.split())
    text = text.lower()
    text = " ".join(_unleet(word) for word in text.split())
    text = _SPELLED_APART.sub(lambda match: re.sub(r"[^a-z]", "", match.group()), text)
    text = _SPACED_OUT.sub(_join_spaced, text)
    return _unstretch(text, vocabulary)


def _latin_word(word: str) -> str:
    """``word`` with look-alike letters made Latin, if every letter in it is Latin or a look-alike."""
    if word.isascii():
        return word
    mapped = [_latin_letter(ch) for ch in word]
    if any(latin is None for latin in mapped):
        return word
    return "".join(latin or "" for latin in mapped)


@lru_cache(maxsize=4096)
def _latin_letter(ch: str) -> str | None:
    """The ASCII letter ``ch`` looks like or decorates; ``ch`` itself if not a letter; None if foreign."""
    if ch.isascii() or not ch.isalpha():
        return ch
    for glyph in confusables.confusables_data.get(ch, ()):
        if len(glyph["c"]) == 1 and glyph["c"].isascii() and glyph["c"].isalnum():
            return str(glyph["c"])
    stripped = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if stripped.isascii() and stripped.isalpha():
        return stripped
    name = unicodedata.name(ch, "")
    small_capital = re.fullmatch(r"LATIN LETTER SMALL CAPITAL ([A-Z])", name)
    return small_capital.group(1).lower() if small_capital else None


def _unleet(word: str) -> str:
    """``word`` with digits and symbols read as letters, when it is a word and not a number."""
    core = word.strip(".,;:?!\"'()[]{}")
    if not any(ch in LEET for ch in core) or not any(ch.isalpha() for ch in core):
        return word
    if _NUMBER.fullmatch(core) or re.fullmatch(r"\d+(?:[-/x][\w-]+)+", core):
        return word
    start = word.index(core)
    return word[:start] + "".join(LEET.get(ch, ch) for ch in core) + word[start + len(core):]


def _join_spaced(match: re.Match[str]) -> str:
    letters = match.group().split()
    if letters[0] in _ARTICLES and len(letters) >= 4:
        return letters[0] + " " + "".join(letters[1:])
    return "".join(letters)


def _unstretch(text: str, vocabulary: Container[str]) -> str:
    return re.sub(r"[a-z]+", lambda match: _unstretch_word(match.group(), vocabulary), text)


def _unstretch_word(word: str, vocabulary: Container[str]) -> str:
    """Cut each run of three or more of a letter to one or two, preferring a known word."""
    if not _STRETCHED.search(word):
        return word
    parts = re.split(r"(([a-z])\2{2,})", word)
    # re.split with two groups yields: text, run, letter, text, run, letter, ..., text
    texts, runs = parts[0::3], [parts[i][0] for i in range(1, len(parts), 3)]
    for lengths in product((1, 2), repeat=min(len(runs), 6)):
        candidate = texts[0] + "".join(run * n + rest for run, n, rest in zip(runs, lengths, texts[1:], strict=False))
        if candidate in vocabulary:
            return candidate
    return texts[0] + "".join(run + rest for run, rest in zip(runs, texts[1:], strict=False))
