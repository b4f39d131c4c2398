"""Tokenizers built offline for the tiny test models.

Real tokenizers come from the model hub, which framequeue's tests cannot reach. These are
built from a small built-in word list: every single byte (or printable character) is a
token, and each listed word gets a chain of BPE merges so that it encodes as a few tokens
rather than one per character.
That is enough for the random-weight tiny models, whose output only has to be well formed.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import CLIPTokenizer, PreTrainedTokenizerFast

#: Words given BPE merges; chosen from the vocabulary of image prompts.
WORDS: tuple[str, ...] = tuple(
    ["a", "an", "the", "of", "in", "on", "with", "and", "at", "by", "from", "under", "over", "into", "near", "beside", "through", "fox", "cat", "dog", "bird", "horse", "dragon", "robot", "castle", "city", "street", "forest", "mountain", "river", "ocean", "lake", "desert", "island", "garden", "house", "tower", "bridge", "ship", "car", "train", "portrait", "landscape", "painting", "photo", "drawing", "sketch", "illustration", "render", "scene", "sky", "clouds", "sunset", "sunrise", "night", "morning", "rain", "snow", "fog", "storm", "light", "shadow", "fire", "water", "stone", "glass", "metal", "wood", "red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "golden", "silver", "bright", "dark", "soft", "warm", "cold", "vivid", "pastel", "misty", "glowing", "ancient", "futuristic", "quiet", "busy", "tiny", "giant", "cinematic", "dramatic", "detailed", "sharp", "blurry", "colorful", "watercolor", "oil", "ink", "charcoal", "neon", "film", "grain", "lens", "wide", "angle", "close", "up", "aerial", "view", "style", "art", "digital", "studio", "lighting"]
)

#: Special tokens of the tiny causal language model.
TEXT_EOS_TOKEN = "<|endoftext|>"
TEXT_PAD_TOKEN = "<|pad|>"
TEXT_UNK_TOKEN = "<|unk|>"
_WORD_SUFFIX = "</w>"


def _word_merges(words: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str]]]:
    """Return ``(new_tokens, merges)`` merging each word left to right into one token.

    The last character of a word carries the end-of-word suffix, as CLIP-style BPE expects;
    every character of :data:`WORDS` is ASCII, so it is in every alphabet used here.
    """
    known: set[str] = set()
    tokens: list[str] = []
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + _WORD_SUFFIX]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in known:
                known.add(merged)
                tokens.append(merged)
                merges.append((left, right))
            left = merged
    return tokens, merges


def _vocab(specials: list[str], alphabet: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return the vocabulary (specials, characters, word tokens) and its merges."""
    word_tokens, merges = _word_merges(WORDS)
    ordered = specials + alphabet + [char + _WORD_SUFFIX for char in alphabet] + word_tokens
    return {token: index for index, token in enumerate(dict.fromkeys(ordered))}, merges


def build_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """Build a byte-level CLIP tokenizer over :data:`WORDS`; no file or network needed."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab, merges = _vocab(["<|startoftext|>", "<|endoftext|>"], alphabet)
    # The annotation says list[str], but the tokenizers BPE it builds needs (left, right) pairs.
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)  # type: ignore[arg-type]


def build_text_tokenizer(model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """Build a word-level BPE tokenizer for the tiny causal LM, with eos and pad tokens.

    It lowercases, splits on whitespace and punctuation, and decodes words back with single
    spaces. It has no chat template, so the prompt enhancer feeds it the plain prompt.
    """
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab, merges = _vocab([TEXT_EOS_TOKEN, TEXT_PAD_TOKEN, TEXT_UNK_TOKEN], alphabet)
    bpe = models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token=TEXT_UNK_TOKEN,
        end_of_word_suffix=_WORD_SUFFIX,
    )
    backend = Tokenizer(bpe)
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.BPEDecoder(suffix=_WORD_SUFFIX)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=TEXT_EOS_TOKEN,
        bos_token=TEXT_EOS_TOKEN,
        pad_token=TEXT_PAD_TOKEN,
        unk_token=TEXT_UNK_TOKEN,
        model_max_length=model_max_length,
    )
