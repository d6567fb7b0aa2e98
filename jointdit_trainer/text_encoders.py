"""CLIP-L and T5-XXL text encoders through transformers, from a Hugging Face folder or a single file.

* Folder: a ``CLIPTextModel`` / ``T5EncoderModel`` folder (``config.json`` + weights) whose tokenizer
  files sit in the same folder, or in the folder given as ``clip_tokenizer`` / ``t5_tokenizer`` (e.g.
  the FLUX.1-dev repository's ``text_encoder`` + ``tokenizer`` folders).
* Single file: ComfyUI's ``clip_l.safetensors`` / ``t5xxl_fp16.safetensors`` (transformers key layout,
  ``text_model.`` prefix optional). The architecture is read from the tensor shapes; the tokenizer must
  come from a folder (``clip_tokenizer`` / ``t5_tokenizer``), for instance ComfyUI's
  ``comfy/sd1_tokenizer`` and ``comfy/text_encoders/t5_tokenizer``. fp8 files with scale tensors are
  refused (use the fp16 file).

Encoding follows the official pipeline (sd-scripts ``FluxTextEncodingStrategy`` with the T5 attention
mask off): CLIP pooled output of the 77-token padded prompt, T5 last hidden state of the prompt padded
to ``t5_max_length`` (512) tokens, no attention mask.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model")


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(model_path: str | Path, tokenizer_path: str | Path | None, what: str):
    """``AutoTokenizer`` from ``tokenizer_path``, else from the model folder.

    Raises:
        FileNotFoundError: no tokenizer files in either place (says which config key to set).
    """
    from transformers import AutoTokenizer

    candidates = [Path(tokenizer_path)] if tokenizer_path else []
    model_path = Path(model_path)
    if model_path.is_dir():
        candidates += [model_path, model_path.parent / "tokenizer" if what == "clip_l" else model_path.parent / "tokenizer_2"]
    for folder in candidates:
        if folder.is_dir() and _has_tokenizer(folder):
            return AutoTokenizer.from_pretrained(str(folder))
    key = "clip_tokenizer" if what == "clip_l" else "t5_tokenizer"
    raise FileNotFoundError(
        f"no tokenizer found for {what} ({model_path}); set {key} to a folder with tokenizer.json / tokenizer_config.json"
    )


def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _load_single_file(path: Path) -> dict[str, Tensor]:
    sd = load_file(str(path))
    if any(k.endswith("scale_weight") or k == "scaled_fp8" for k in sd):
        raise ValueError(f"{path.name} is a scaled fp8 file; use the fp16 (or bf16) text encoder file instead")
    return sd


def clip_from_file(path: Path, tokenizer, dtype: torch.dtype):
    """Build a ``CLIPTextModel`` from a single safetensors file; the config is read from the shapes.

    Heads are ``hidden // 64`` (CLIP-L: 12; the shapes do not store the head count); the pooled
    output is taken at the tokenizer's end-of-text token. Raises ValueError when the file is not a
    CLIP text model.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    sd = {k.removeprefix("text_model."): v for k, v in _load_single_file(path).items()}
    if "embeddings.token_embedding.weight" not in sd:
        raise ValueError(f"{path.name} is not a CLIP text encoder (embeddings.token_embedding.weight missing)")
    vocab, hidden = sd["embeddings.token_embedding.weight"].shape
    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=sd["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count(sd, r"encoder\.layers\.(\d+)\."),
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=sd["embeddings.position_embedding.weight"].shape[0],
        hidden_act="quick_gelu",
        projection_dim=hidden,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    model = CLIPTextModel(config)
    sd = {k: v for k, v in sd.items() if k in model.state_dict()}
    model.load_state_dict(sd, strict=True)
    return model.to(dtype)


def t5_from_file(path: Path, dtype: torch.dtype):
    """Build a ``T5EncoderModel`` from a single safetensors file; the config is read from the shapes.

    Raises ValueError when the file is not a T5 encoder.
    """
    from transformers import T5Config, T5EncoderModel

    sd = _load_single_file(path)
    if "shared.weight" not in sd and "encoder.embed_tokens.weight" in sd:
        sd["shared.weight"] = sd["encoder.embed_tokens.weight"]
    if "shared.weight" not in sd or "encoder.block.0.layer.0.SelfAttention.q.weight" not in sd:
        raise ValueError(f"{path.name} is not a T5 encoder (shared.weight / encoder.block.0 missing)")
    sd.setdefault("encoder.embed_tokens.weight", sd["shared.weight"])
    vocab, d_model = sd["shared.weight"].shape
    buckets, heads = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sd
    wi = "wi_0" if gated else "wi"
    config = T5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=sd["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads,
        d_ff=sd[f"encoder.block.0.layer.1.DenseReluDense.{wi}.weight"].shape[0],
        num_layers=_count(sd, r"encoder\.block\.(\d+)\."),
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        feed_forward_proj="gated-gelu" if gated else "relu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    model = T5EncoderModel(config)
    model.load_state_dict({k: v for k, v in sd.items() if k in model.state_dict()}, strict=True)
    return model.to(dtype)


class TextEncoders:
    """CLIP-L + T5-XXL with their tokenizers, for caching prompt embeddings.

    Args:
        clip_l, t5xxl: model folder or single safetensors file.
        clip_tokenizer, t5_tokenizer: tokenizer folders (required for single files).
        t5_max_length: T5 padding length (official 512).
        device, dtype: where and in which precision the encoders run.

    Raises:
        FileNotFoundError: a path is missing; ValueError: a file of the wrong kind.
    """

    def __init__(self, clip_l, t5xxl, clip_tokenizer=None, t5_tokenizer=None, t5_max_length=512, device="cpu", dtype=torch.float32):
        from transformers import CLIPTextModel, T5EncoderModel

        for name, p in (("clip_l", clip_l), ("t5xxl", t5xxl)):
            if not p or not Path(p).exists():
                raise FileNotFoundError(f"{name}: set it to a Hugging Face folder or a .safetensors file (got {p!r})")
        clip_l, t5xxl = Path(clip_l), Path(t5xxl)
        self.clip_tokenizer = load_tokenizer(clip_l, clip_tokenizer, "clip_l")
        self.t5_tokenizer = load_tokenizer(t5xxl, t5_tokenizer, "t5xxl")
        if clip_l.is_dir():
            self.clip = CLIPTextModel.from_pretrained(str(clip_l), dtype=dtype)
        else:
            self.clip = clip_from_file(clip_l, self.clip_tokenizer, dtype)
        if t5xxl.is_dir():
            self.t5 = T5EncoderModel.from_pretrained(str(t5xxl), dtype=dtype)
        else:
            self.t5 = t5_from_file(t5xxl, dtype)
        self.clip.to(device).eval().requires_grad_(False)
        self.t5.to(device).eval().requires_grad_(False)
        self.device, self.t5_max_length = torch.device(device), int(t5_max_length)
        self.clip_max_length = int(self.clip.config.max_position_embeddings)

    @property
    def context_dim(self) -> int:
        return int(self.t5.config.d_model)

    @property
    def pooled_dim(self) -> int:
        return int(self.clip.config.hidden_size)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Encode prompts.

        Returns:
            ``(t5, clip_pooled)``: (N, t5_max_length, d_model) and (N, hidden) float32 on the CPU
            (FLUX: 4096 and 768).
        """
        clip_ids = self.clip_tokenizer(
            list(prompts), padding="max_length", max_length=self.clip_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        t5_ids = self.t5_tokenizer(
            list(prompts), padding="max_length", max_length=self.t5_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        pooled = self.clip(input_ids=clip_ids).pooler_output
        t5 = self.t5(input_ids=t5_ids).last_hidden_state
        return t5.float().cpu(), pooled.float().cpu()
