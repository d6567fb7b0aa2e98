"""Tiny text encoders for the RGB-D world: a word-level tokenizer over the caption vocabulary,
a CLIP text model (pooled vector -> Flux ``y``) and a T5 encoder (token states -> Flux ``txt``).

Both are ordinary Hugging Face folders (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json), so ``transformers.AutoTokenizer`` / ``CLIPTextModel`` /
``T5EncoderModel.from_pretrained(folder)`` load them like the real CLIP-L and T5-XXL. The
weights are random (seeded): nothing is pretrained, the base DiT learns to read them.

    python -m rgbd_world.training.text --out DIR --clip-dim 64 --t5-dim 64 --seed 0

writes DIR/clip and DIR/t5; ``python -m rgbd_world.training.text --vocabulary`` lists the words captions may use.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import torch

from ..world.scenes import VOCABULARY
from ..cli import command_prog

PAD, EOS, UNK, BOS = "<pad>", "</s>", "<unk>", "<s>"
SPECIAL_TOKENS = (PAD, EOS, UNK, BOS)  # ids 0, 1, 2, 3 (T5 order; CLIP's eos id must not be 2)
CLIP_MAX_LENGTH = 77  # like CLIP-L, so loaders that pad CLIP to 77 work unchanged
T5_MAX_LENGTH = 32  # longest caption is < 30 tokens; real T5-XXL uses 256/512


def vocabulary() -> dict[str, int]:
    """Token -> id: the four special tokens, then the caption words (rgbd_world.world.scenes.VOCABULARY)."""
    words = list(SPECIAL_TOKENS) + [w for w in VOCABULARY if w not in SPECIAL_TOKENS]
    return {w: i for i, w in enumerate(words)}


def caption_word_groups() -> list[tuple[str, list[str]]]:
    """The caption vocabulary by role, (group name, words) in caption order: every word of
    :func:`vocabulary` but the special tokens, each once (rgbd_world.world.scenes' grammar names them)."""
    from ..world.scenes import COLOURS, GROUND_TEXTURES, NUMBERS, OBJECT_TEXTURES, PLURAL, RELATIONS, SHAPES, SIZES

    return [
        ("colours", list(COLOURS)),
        ("shapes", list(SHAPES)),
        ("plural shapes (after two)", list(PLURAL.values())),
        ("sizes", [s for s in SIZES if s]),
        ("object textures", [t for t in OBJECT_TEXTURES if t]),
        ("floors (... on a checkered floor)", list(GROUND_TEXTURES)),
        ("relations", list(RELATIONS)),
        ("counts", list(NUMBERS.values())),
        ("other words", ["a", "an", "and", "on", "floor"]),
    ]


def vocabulary_markdown() -> str:
    """The caption vocabulary as a Markdown list, one line per group of :func:`caption_word_groups`
    (the README's list; ``python -m rgbd_world.training.text --vocabulary`` prints it)."""
    return "\n".join(f"- {name}: {', '.join(words)}" for name, words in caption_word_groups())


def build_tokenizer(kind: str, max_length: int | None = None):
    """Word-level ``PreTrainedTokenizerFast`` over the caption vocabulary.

    kind "clip": ``<s> words </s>``, padded with <pad> (CLIP pools at the first </s>);
    kind "t5": ``words </s>``, padded with <pad>. Input is lower-cased and split on whitespace
    and punctuation; words outside the vocabulary become <unk>. ``max_length`` sets
    ``model_max_length`` (default 77 for clip, 32 for t5). Raises ValueError for another kind.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if kind not in ("clip", "t5"):
        raise ValueError(f"tokenizer kind must be 'clip' or 't5', got {kind!r}")
    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    template = f"{BOS} $A {EOS}" if kind == "clip" else f"$A {EOS}"
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    if max_length is None:
        max_length = CLIP_MAX_LENGTH if kind == "clip" else T5_MAX_LENGTH
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        bos_token=BOS if kind == "clip" else None,
        model_max_length=max_length,
    )


def build_text_encoders(
    out_dir: str | Path,
    clip_dim: int = 64,
    t5_dim: int = 64,
    seed: int = 0,
    layers: int = 2,
    heads: int = 2,
    t5_max_length: int = T5_MAX_LENGTH,
) -> dict[str, Path]:
    """Create and save a random CLIP text model and T5 encoder with their tokenizers.

    clip_dim: CLIP hidden size = pooled output size = the Flux ``vec_in_dim``.
    t5_dim: T5 ``d_model`` = the Flux ``context_in_dim``. Both must be divisible by ``heads``.
    seed: the weights depend only on (seed, sizes, transformers' init code); the global torch
    RNG state is restored afterwards.
    Returns {"clip": out_dir/"clip", "t5": out_dir/"t5"} (Hugging Face folders, safetensors).
    Raises ValueError for sizes not divisible by heads.
    """
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    for name, dim in (("clip_dim", clip_dim), ("t5_dim", t5_dim)):
        if dim < heads or dim % heads:
            raise ValueError(f"{name}={dim} must be a positive multiple of heads={heads}")
    vocab = vocabulary()
    out_dir = Path(out_dir)
    clip_cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=clip_dim,
        intermediate_size=4 * clip_dim,
        projection_dim=clip_dim,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=CLIP_MAX_LENGTH,
        pad_token_id=vocab[PAD],
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
    )
    t5_cfg = T5Config(
        vocab_size=len(vocab),
        d_model=t5_dim,
        d_kv=t5_dim // heads,
        d_ff=2 * t5_dim,
        num_layers=layers,
        num_heads=heads,
        feed_forward_proj="gated-gelu",  # T5 v1.1, as T5-XXL
        pad_token_id=vocab[PAD],
        eos_token_id=vocab[EOS],
        decoder_start_token_id=vocab[PAD],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = CLIPTextModel(clip_cfg).eval()
        t5 = T5EncoderModel(t5_cfg).eval()
    paths = {"clip": out_dir / "clip", "t5": out_dir / "t5"}
    clip.save_pretrained(paths["clip"])
    build_tokenizer("clip").save_pretrained(paths["clip"])
    t5.save_pretrained(paths["t5"])
    build_tokenizer("t5", t5_max_length).save_pretrained(paths["t5"])
    return paths


def load_text_encoders(root: str | Path, t5_max_length: int | None = None, device: str = "cpu", dtype=torch.float32):
    """Load root/clip and root/t5 (written by :func:`build_text_encoders`) with the trainer's
    loader, ``jointdit_trainer.text_encoders.TextEncoders``, so captions are encoded exactly as the
    trainer caches them. ``encoders.encode(captions)`` returns (t5 tokens (B, T, t5_dim),
    clip pooled (B, clip_dim)) float32 on the CPU; T = t5_max_length (default: the T5
    tokenizer's model_max_length, 32; CLIP is padded to 77 like CLIP-L).
    Raises FileNotFoundError when the folders are missing.
    """
    from transformers import AutoTokenizer

    from jointdit_trainer.text_encoders import TextEncoders

    root = Path(root)
    for sub in ("clip", "t5"):
        if not (root / sub / "config.json").is_file():
            raise FileNotFoundError(f"{root / sub} is not a text-encoder folder; run python -m rgbd_world.training.text --out {root}")
    if t5_max_length is None:
        t5_max_length = AutoTokenizer.from_pretrained(str(root / "t5")).model_max_length
    with _no_transformers_progress_bars():
        return TextEncoders(root / "clip", root / "t5", t5_max_length=t5_max_length, device=device, dtype=dtype)


@contextmanager
def _no_transformers_progress_bars():
    """transformers' "Loading weights" bars off while our two tiny encoders load, then as they were."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def main(argv=None):
    p = argparse.ArgumentParser(prog=command_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder to write clip/ and t5/ into")
    p.add_argument("--vocabulary", action="store_true", help="print the words captions may use (Markdown list) and exit")
    p.add_argument("--clip-dim", type=int, default=64, help="= Flux vec_in_dim")
    p.add_argument("--t5-dim", type=int, default=64, help="= Flux context_in_dim")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.vocabulary:
        print(vocabulary_markdown())
        return
    if not a.out:
        p.error("give --out DIR (or --vocabulary)")
    paths = build_text_encoders(a.out, a.clip_dim, a.t5_dim, a.seed, a.layers, a.heads)
    for k, v in paths.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
