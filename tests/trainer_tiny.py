"""Tiny stand-ins for the trainer tests: a Flux file, an autoencoder file, CLIP/T5 folders, a dataset.

Everything is random and small (hidden 64, one double + one single block, 32x32 images) so a
training run takes seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from jointdit_core import Flux, FluxConfig
from jointdit_core.autoencoder import AutoEncoder
from jointdit_core.config import AutoEncoderConfig

TINY_FLUX = FluxConfig(
    in_channels=64, vec_in_dim=16, context_in_dim=32, hidden_size=64, num_heads=2, depth=1,
    depth_single_blocks=1, axes_dim=(8, 12, 12),
)
TINY_AE = AutoEncoderConfig(resolution=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=16)
TINY_RANKS = {"txt_in": 8, "vector_in_in_layer": 8, "vector_in_out_layer": 8, "blocks": 8}
WORDS = ["a", "red", "blue", "green", "ball", "box", "on", "the", "floor", "table", "photo", "of", "cat", "sofa"]


def make_flux(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_file({k: v.contiguous() for k, v in Flux(TINY_FLUX).state_dict().items()}, str(path))
    return path


def make_ae(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_file({k: v.contiguous() for k, v in AutoEncoder(TINY_AE).state_dict().items()}, str(path))
    return path


def make_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over :data:`WORDS` that appends [EOS], saved as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[EOS]": 1, "[UNK]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")
    fast.save_pretrained(str(folder))


def make_text_encoders(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Tiny CLIPTextModel (pooled 16) and T5EncoderModel (width 32) folders with the tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    vocab = len(WORDS) + 3
    clip_dir, t5_dir = root / "clip_l", root / "t5xxl"
    CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=12, bos_token_id=0, eos_token_id=1, pad_token_id=0,
    )).save_pretrained(str(clip_dir))
    T5EncoderModel(T5Config(
        vocab_size=vocab, d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=1, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1,
    )).save_pretrained(str(t5_dir))
    make_tokenizer(clip_dir)
    make_tokenizer(t5_dir)
    return clip_dir, t5_dir


def pattern(seed: int, w: int = 48, h: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A smooth coloured image (h, w, 3) uint8 and a matching disparity map (h, w) float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(6, 12)
    blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2).astype(np.float32)
    base = rng.uniform(0, 1, 3)[None, None] * (yy / h)[..., None]
    img = np.clip(base + blob[..., None] * rng.uniform(0.3, 1, 3)[None, None], 0, 1)
    disparity = 0.2 + 0.5 * (yy / h) + 0.8 * blob
    return (img * 255).astype(np.uint8), disparity.astype(np.float32)


def make_dataset(root: Path, n: int = 4, extras: bool = False) -> Path:
    """``n`` good samples (16-bit PNG and .npy depth, .txt and .jsonl captions).

    With ``extras``: a corrupt image file, an image without a depth map, a colour-mapped depth PNG,
    and an image whose depth map has another aspect ratio, each of which preprocessing must skip.
    """
    (root / "images").mkdir(parents=True)
    (root / "depth").mkdir()
    (root / "captions").mkdir()
    jsonl = []
    for i in range(n):
        img, disp = pattern(i)
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        if i % 2 == 0:
            Image.fromarray((disp / disp.max() * 65535).astype(np.uint16)).save(root / "depth" / f"s{i}.png")
        else:
            np.save(root / "depth" / f"s{i}.npy", disp)
        caption = f"a {['red', 'blue', 'green', 'red'][i % 4]} ball on the {['floor', 'table'][i % 2]}"
        if i % 2 == 0:
            (root / "captions" / f"s{i}.txt").write_text(caption)
        else:
            jsonl.append(json.dumps({"file": f"s{i}.png", "text": caption}))
    (root / "captions.jsonl").write_text("\n".join(jsonl) + "\n")
    if extras:
        (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        img, _ = pattern(100)
        Image.fromarray(img).save(root / "images" / "nodepth.png")
        Image.fromarray(img).save(root / "images" / "colourdepth.png")
        rgb = np.stack([np.arange(48, dtype=np.uint8)[None].repeat(40, 0), np.zeros((40, 48), np.uint8), np.full((40, 48), 9, np.uint8)], -1)
        Image.fromarray(rgb).save(root / "depth" / "colourdepth.png")
        Image.fromarray(img).save(root / "images" / "badaspect.png")
        np.save(root / "depth" / "badaspect.npy", np.ones((10, 40), np.float32))
    return root


def make_setup(root: Path, n: int = 4, extras: bool = False) -> dict:
    """All files a run needs; returns config values (paths as strings)."""
    root.mkdir(parents=True, exist_ok=True)
    clip_dir, t5_dir = make_text_encoders(root / "encoders")
    return {
        "flux_path": str(make_flux(root / "flux-tiny.safetensors")),
        "ae_path": str(make_ae(root / "ae-tiny.safetensors")),
        "clip_l": str(clip_dir),
        "t5xxl": str(t5_dir),
        "dataset_dir": str(make_dataset(root / "data", n, extras)),
        "cache_dir": str(root / "cache"),
        "output_dir": str(root / "out"),
        "resolution": 32,
        "t5_max_length": 8,
        "cache_dtype": "fp32",
        "sample_prompts": ["a red ball on the table"],
        "lora_ranks": dict(TINY_RANKS),
        "mixed_precision": "no",
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "log_with": "none",
        "sample_every_n_steps": 0,
    }


def make_cached_setup(root: Path, n: int = 4) -> dict:
    """:func:`make_setup` plus its latent cache (``python -m jointdit_trainer preprocess``); returns the config values."""
    from jointdit_trainer.config import load_config
    from jointdit_trainer.preprocess import preprocess

    values = make_setup(root, n)
    preprocess(load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in values.items()]))
    return values


def make_random_cache(cache_dir: Path, n: int = 4, seed: int = 0, t5_tokens: int = 8) -> Path:
    """A latent cache of random tensors in the layout ``python -m jointdit_trainer preprocess`` writes.

    For environments without usable text encoders (training itself never runs them).
    """
    from jointdit_trainer.data import CACHE_VERSION

    g = torch.Generator().manual_seed(seed)
    c, ctx, vec = TINY_FLUX.in_channels // 4, TINY_FLUX.context_in_dim, TINY_FLUX.vec_in_dim
    (cache_dir / "samples").mkdir(parents=True)
    for i in range(n):
        save_file({
            "image_latent": torch.randn(c, 8, 8, generator=g), "depth_latent": torch.randn(c, 8, 8, generator=g),
            "t5": torch.randn(t5_tokens, ctx, generator=g), "clip_pooled": torch.randn(vec, generator=g),
        }, str(cache_dir / "samples" / f"r{i}.safetensors"))
    save_file({"t5": torch.randn(t5_tokens, ctx, generator=g), "clip_pooled": torch.randn(vec, generator=g)},
              str(cache_dir / "empty_prompt.safetensors"))
    manifest = {
        "version": CACHE_VERSION, "resolution": 32, "latent_shape": [c, 8, 8], "t5_shape": [t5_tokens, ctx],
        "clip_dim": vec, "depth_transform": "none", "samples": [f"r{i}" for i in range(n)], "skipped": [],
    }
    (cache_dir / "cache.json").write_text(json.dumps(manifest))
    return cache_dir
