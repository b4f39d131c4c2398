from __future__ import annotations

import pathlib

from pipelines.tiny_models import build_tiny_image_model, build_tiny_text_model
from pipelines.tiny_tokenizers import build_clip_tokenizer, build_text_tokenizer


def test_every_host_builds_the_same_tiny_weights(tmp_path: pathlib.Path) -> None:
    # Hosts build their own caches; seeded jobs only reproduce if the weights agree.
    for name in ("a", "b"):
        build_tiny_text_model(tmp_path / name / "text")
        build_tiny_image_model(tmp_path / name / "image")
    for relative in ("text/model.safetensors", "image/unet/diffusion_pytorch_model.safetensors"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()


def test_the_clip_tokenizer_round_trips_prompt_words() -> None:
    tokenizer = build_clip_tokenizer()
    ids = tokenizer("A Watercolor painting of a fox")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a watercolor painting of a fox"


def test_the_text_tokenizer_has_eos_and_pad_and_decodes_words_with_spaces() -> None:
    tokenizer = build_text_tokenizer()
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    ids = tokenizer("misty forest at sunrise, 35mm")["input_ids"]
    assert tokenizer.decode(ids) == "misty forest at sunrise , 35mm"
