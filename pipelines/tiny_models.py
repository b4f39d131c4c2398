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
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import StableVideoDiffusionPipeline
from transformers import (
    CLIPImageProcessorPil,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    LlamaConfig,
    LlamaForCausalLM,
)

from pipelines.tiny_tokenizers import build_clip_tokenizer, build_text_tokenizer

#: Seed for the random weights, so every build of the tiny models is the same model.
WEIGHTS_SEED = 0
#: Width of the tiny CLIP text encoder; the UNet cross-attends to vectors of this size.
TEXT_ENCODER_DIM = 16
#: Width of the tiny video model's CLIP image embedding; its UNet cross-attends to it.
IMAGE_EMBED_DIM = 32
#: Side the video pipeline resizes the still to before the CLIP image encoder, as SVD's does.
IMAGE_ENCODER_SIDE_PX = 224
#: Width of each of the three micro-conditions SVD embeds (fps, motion bucket, noise strength).
TIME_ID_DIM = 8
#: Frames the tiny video UNet is configured for: img2vid's clip length.
TINY_VIDEO_FRAMES = 14


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


def tiny_image_components(seed: int = WEIGHTS_SEED) -> dict[str, Any]:
    """Return the Stable Diffusion components, by name, with random weights drawn from ``seed``.

    Like sd-turbo it uses an Euler scheduler with trailing timesteps, so a few steps and no
    classifier-free guidance are a sensible default. It has no safety checker: framequeue
    screens content in its own stage (:mod:`pipelines.safety`).
    """
    tokenizer = build_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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


def build_tiny_image_model(out_dir: pathlib.Path, seed: int = WEIGHTS_SEED) -> None:
    """Save a Stable-Diffusion-layout pipeline of :func:`tiny_image_components` into ``out_dir``."""
    StableDiffusionPipeline(**tiny_image_components(seed)).save_pretrained(out_dir)


def _tiny_video_unet() -> UNetSpatioTemporalConditionModel:
    """A two-level spatio-temporal UNet; its GroupNorms have 32 groups, so 32 channels at least."""
    return UNetSpatioTemporalConditionModel(
        sample_size=32,
        in_channels=8,  # the noisy latents and the still's latents, stacked
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        addition_time_embed_dim=TIME_ID_DIM,
        projection_class_embeddings_input_dim=3 * TIME_ID_DIM,
        layers_per_block=1,
        cross_attention_dim=IMAGE_EMBED_DIM,
        num_attention_heads=(2, 4),
        num_frames=TINY_VIDEO_FRAMES,
    )


def _tiny_temporal_vae() -> AutoencoderKLTemporalDecoder:
    """A four-level VAE with a temporal decoder: latents are 1/8 of the frame size, as in SVD."""
    return AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
    )


def _tiny_image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        projection_dim=IMAGE_EMBED_DIM,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_ENCODER_SIDE_PX,
        patch_size=32,
    )
    return CLIPVisionModelWithProjection(config)


def tiny_image_to_video_components(seed: int = WEIGHTS_SEED) -> dict[str, Any]:
    """Return the Stable Video Diffusion components, by name, with random weights drawn from ``seed``.

    The scheduler is configured as SVD img2vid's is (Euler, v-prediction, Karras sigmas from
    0.002 to 700), so the tiny model takes the real one's denoising path.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _tiny_video_unet()
        vae = _tiny_temporal_vae()
        image_encoder = _tiny_image_encoder()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_type="continuous",
        timestep_spacing="leading",
        steps_offset=1,
    )
    # Only its CLIP normalisation is used: the pipeline resizes the still itself.
    feature_extractor = CLIPImageProcessorPil(size=IMAGE_ENCODER_SIDE_PX, crop_size=IMAGE_ENCODER_SIDE_PX)
    return {
        "vae": vae,
        "image_encoder": image_encoder,
        "unet": unet,
        "scheduler": scheduler,
        "feature_extractor": feature_extractor,
    }


def build_tiny_image_to_video_model(out_dir: pathlib.Path, seed: int = WEIGHTS_SEED) -> None:
    """Save a Stable-Video-Diffusion-layout pipeline of :func:`tiny_image_to_video_components` into ``out_dir``."""
    StableVideoDiffusionPipeline(**tiny_image_to_video_components(seed)).save_pretrained(out_dir)
