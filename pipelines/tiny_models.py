"""Random-weight tiny models, built offline from configs, for tests and CPU demos.

They have the same architecture and on-disk layout as the real models of the ``standard``
profile, so every backend loads them with the same ``from_pretrained`` call, but they are
small enough to build in seconds and to run on a CPU. Their output is noise in the right
shape: it checks plumbing (sizes, seeds, batching, encoding), not quality.
"""

from __future__ import annotations

import pathlib
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaForCausalLM

from pipelines.tiny_tokenizers import build_clip_tokenizer, build_text_tokenizer

#: Seed for the random weights, so every build of the tiny models is the same model.
WEIGHTS_SEED = 0
#: Width of the tiny CLIP text encoder; the UNet cross-attends to vectors of this size.
TEXT_ENCODER_DIM = 16


def build_tiny_text_model(out_dir: pathlib.Path) -> None:
    """Save a two-layer Llama-architecture causal LM and its tokenizer into ``out_dir``."""
    tokenizer = build_text_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHTS_SEED)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _tiny_unet() -> UNet2DConditionModel:
    """A two-level UNet with cross-attention only at the lower resolution (cheap at 512 px)."""
    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_ENCODER_DIM,
        attention_head_dim=8,
        norm_num_groups=4,
    )


def _tiny_vae() -> AutoencoderKL:
    """A four-level VAE, so latents are 1/8 of the image size exactly as in Stable Diffusion."""
    return AutoencoderKL(
        block_out_channels=(4, 8, 8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=64,
    )


def _tiny_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_ENCODER_DIM,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=TEXT_ENCODER_DIM,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def tiny_image_components() -> dict[str, Any]:
    """Return the Stable Diffusion components, by name, with seeded random weights.

    Like sd-turbo it uses an Euler scheduler with trailing timesteps, so a few steps and no
    classifier-free guidance are a sensible default. It has no safety checker: framequeue
    screens content in its own stage (:mod:`pipelines.safety`).
    """
    tokenizer = build_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHTS_SEED)
        unet = _tiny_unet()
        vae = _tiny_vae()
        text_encoder = _tiny_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def build_tiny_image_model(out_dir: pathlib.Path) -> None:
    """Save a Stable-Diffusion-layout pipeline of :func:`tiny_image_components` into ``out_dir``."""
    StableDiffusionPipeline(**tiny_image_components()).save_pretrained(out_dir)
