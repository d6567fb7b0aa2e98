"""Train the small text-to-image base of the RGB-D world: a Flux-structured transformer (BFL layout).

    python -m rgbd_world.training.base --cache CACHE_DIR --out MODEL_DIR/flux.safetensors [--steps N]

It reads the latent cache that ``python -m jointdit_trainer preprocess`` writes (image latents, T5 token
states, CLIP pooled vectors, the empty prompt), so the base sees exactly the latents and text
embeddings the JointDiT addons are later trained on. Only the image latents are used: the base is a
plain text-to-image model, as FLUX.1-dev is for JointDiT.

Training is rectified flow as in FLUX.1 / SD3: ``x_t = (1 - t) x0 + t noise``, MSE between the
predicted velocity and ``noise - x0``; t from a shifted logit-normal (``u = sigmoid(N(0, 1))``,
``t = s u / (1 + (s - 1) u)``) with ``s = exp(mu)`` of the Flux-dev sampling schedule at this token
count; captions dropped to the empty prompt 10% of the time. The model is guidance-embedded like
FLUX.1-dev, but without guidance distillation: it is trained with guidance input 1.0 and must be
sampled with guidance 1.0. AdamW, warmup then cosine decay.

Writes ``flux.safetensors`` (BFL ``flux1-dev.safetensors`` names; bfloat16 like FLUX.1-dev) and
``flux.json`` (config, training settings, loss history); ``--preview PNG`` also writes a contact
sheet of text-to-image samples decoded with ``--ae``.

Long runs go in segments: every ``--checkpoint-every`` steps the full training state (float32 weights,
AdamW moments, random generator, loss log) is written to ``<out stem>.checkpoint.safetensors``, and
``--resume`` continues from it exactly where it stopped (the same batches, noise and learning rate as a
straight run). The checkpoint is removed once ``flux.safetensors`` is written.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from jointdit_core.config import FluxConfig
from jointdit_core.flux import Flux
from jointdit_core.latents import image_ids, pack, text_ids, unpack
from jointdit_core.sampler import plan_sampling
from jointdit_core.schedules import flux_mu
from jointdit_trainer.preprocess import resolve_device
from jointdit_trainer.timesteps import shifted_logit_normal

from .autoencoder import cosine_lr, save_trained, training_parser

DEFAULT_CONFIG = FluxConfig(
    in_channels=64,
    vec_in_dim=64,
    context_in_dim=64,
    hidden_size=128,
    mlp_ratio=4.0,
    num_heads=2,
    depth=2,
    depth_single_blocks=4,
    axes_dim=(16, 24, 24),
    guidance_embed=True,
)
GUIDANCE = 1.0  # the guidance input the small base is trained and sampled with


def load_cache(cache_dir: str | Path) -> dict:
    """The trainer's latent cache in memory.

    Returns:
        {"image_latent": (N, C, h, w), "t5": (N, T, ctx), "clip_pooled": (N, vec), "empty_t5": (T, ctx),
        "empty_pooled": (vec,), "manifest": dict}; tensors float32.
    Raises:
        FileNotFoundError: no cache (run ``python -m jointdit_trainer preprocess`` first).
    """
    from jointdit_trainer.data import read_manifest

    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    items = [load_file(str(cache_dir / "samples" / f"{stem}.safetensors")) for stem in manifest["samples"]]
    empty = load_file(str(cache_dir / "empty_prompt.safetensors"))
    stack = lambda key: torch.stack([it[key] for it in items]).float()  # noqa: E731
    return {
        "image_latent": stack("image_latent"),
        "t5": stack("t5"),
        "clip_pooled": stack("clip_pooled"),
        "empty_t5": empty["t5"].float(),
        "empty_pooled": empty["clip_pooled"].float(),
        "manifest": manifest,
    }


def timestep_shift(latent_h: int, latent_w: int) -> float:
    """``exp(mu)`` of the Flux-dev schedule for a latent of this size (1.6 for 16x16 latents, 64 tokens)."""
    return math.exp(flux_mu((latent_h // 2) * (latent_w // 2)))


@torch.no_grad()
def sample_base(model: Flux, txt: torch.Tensor, y: torch.Tensor, latent_hw: tuple[int, int], seed: int = 0, steps: int = 20) -> torch.Tensor:
    """Text-to-image with the plain base: Euler over the Flux-dev shifted schedule, guidance input 1.0.

    The schedule is the rgb branch of :func:`~jointdit_core.sampler.plan_sampling` for joint generation
    (the plain base has no depth branch, so the one-branch Euler update is written here).

    Args:
        txt: (B, T, ctx); y: (B, vec). latent_hw: (h, w) of the latent.
    Returns:
        (B, C, h, w) float32 latents.
    """
    h, w = latent_hw
    b = txt.shape[0]
    gen = torch.Generator().manual_seed(seed)
    x = pack(torch.randn(b, model.config.in_channels // 4, h, w, generator=gen))
    ids, tids = image_ids(b, h, w), text_ids(b, txt.shape[1])
    g = torch.full((b,), GUIDANCE)
    sigmas = plan_sampling("joint_generation", steps=steps, token_count=(h // 2) * (w // 2)).rgb_sigmas
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        v = model(x, ids, txt, tids, torch.full((b,), s), y, g)
        x = x + (s_next - s) * v
    return unpack(x, h, w)


def write_preview(model: Flux, ae_path: str | Path, text_root: str | Path, captions: list[str], path: str | Path, latent_hw, seed: int = 0) -> None:
    """Decode base samples for ``captions`` (two seeds each) into one PNG (rows = seeds)."""
    import numpy as np
    from PIL import Image

    from jointdit_core.checkpoint import load_autoencoder
    from jointdit_core.images import model_to_uint8

    from .text import load_text_encoders

    ae = load_autoencoder(ae_path)
    t5, pooled = load_text_encoders(text_root, t5_max_length=model_t5_length(model, text_root)).encode(captions)
    rows = []
    for s in range(2):
        z = sample_base(model, t5, pooled, latent_hw, seed=seed + s)
        with torch.no_grad():
            img = model_to_uint8(ae.decode(z)).numpy()
        rows.append(np.concatenate(list(img), axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def model_t5_length(model: Flux, text_root) -> int:
    """The T5 length the text tokenizer pads to (the trainer cache uses the same via t5_max_length)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(Path(text_root) / "t5")).model_max_length


def checkpoint_path(out: str | Path) -> Path:
    """Where :func:`train_base` (and :mod:`rgbd_world.training.finetune_decoder`) keep the training state of ``out``:
    ``<stem>.checkpoint.safetensors`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".checkpoint.safetensors")


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.AdamW, gen: torch.Generator, progress: dict, settings: dict) -> None:
    """Write the training state atomically (a temporary file renamed over ``path``).

    Tensors: ``model.<name>`` (the weights of ``model``, the trained module), the optimizer's tensor state as the trainer's checkpoints
    store it (:func:`jointdit_trainer.checkpointing.optimizer_to_flat`), ``generator`` (uint8 state of the
    data/noise generator). Header, as JSON: ``progress`` (step, loss log, seconds), ``settings`` (what must
    match to resume) and ``optimizer`` (param groups and scalar state).
    """
    from jointdit_trainer.checkpointing import optimizer_to_flat

    optimizer_tensors, optimizer_meta = optimizer_to_flat(opt.state_dict())
    state = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    state.update(optimizer_tensors)
    state = {k: v.cpu() for k, v in state.items()}
    state["generator"] = gen.get_state()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    metadata = {"progress": json.dumps(progress), "settings": json.dumps(settings), "optimizer": json.dumps(optimizer_meta)}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.AdamW, gen: torch.Generator, settings: dict) -> dict:
    """Restore a :func:`save_checkpoint` state into ``model``, ``opt`` and ``gen``; returns its progress dict.

    Raises:
        ValueError: the checkpoint was written by a run with other settings (named in the message).
    """
    from jointdit_trainer.checkpointing import optimizer_from_flat

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    saved = json.loads(meta["settings"])
    differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if differ:
        raise ValueError(
            f"{path} was written by a run with other settings ({', '.join(f'{k}: {saved.get(k)} there, {settings.get(k)} now' for k in differ)}): "
            "resume with the same options, or delete the checkpoint to start over"
        )
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    opt.load_state_dict(optimizer_from_flat(state, json.loads(meta["optimizer"])))
    gen.set_state(state["generator"])
    return json.loads(meta["progress"])


def train_base(
    cache: str | Path,
    out: str | Path,
    config: FluxConfig = DEFAULT_CONFIG,
    steps: int = 1200,
    batch: int = 64,
    lr: float = 1e-3,
    caption_dropout: float = 0.1,
    seed: int = 0,
    log_every: int = 50,
    dtype: str = "bf16",
    checkpoint_every: int = 0,
    resume: bool = False,
    device: str = "auto",
) -> Path:
    """Train the base on the cache and write ``out`` (+ ``.json``). Returns ``out``.

    ``device``: "auto" (CUDA when present, else the CPU), "cpu", "cuda", ...; batches and noise come from a
    CPU generator on every device (a checkpoint resumes on another device with the same draws).

    ``checkpoint_every`` > 0 writes the training state to :func:`checkpoint_path` every that many steps;
    ``resume`` continues from it (a run resumed any number of times gives the same weights as a straight
    one on the same machine and thread count).

    Raises:
        FileNotFoundError: no cache, or ``resume`` without a checkpoint; FileExistsError: a checkpoint of
        an earlier run exists and ``resume`` is off (nothing is overwritten); ValueError: the cache's latent
        channels or text widths do not fit ``config`` (in_channels = 4 x latent channels, context_in_dim =
        T5 width, vec_in_dim = CLIP width), or the checkpoint's settings differ from this run's.
    """
    out = Path(out)
    data = load_cache(cache)
    x0_all, t5_all, pooled_all = data["image_latent"], data["t5"], data["clip_pooled"]
    n, c, h, w = x0_all.shape
    for what, have, want in (("4 x latent channels", 4 * c, config.in_channels), ("T5 width", t5_all.shape[-1], config.context_in_dim), ("CLIP width", pooled_all.shape[-1], config.vec_in_dim)):
        if have != want:
            raise ValueError(f"the cache does not fit the base config: {what} is {have} in the cache, {want} in the config")
    ckpt = checkpoint_path(out)
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {ckpt}; start without --resume")
    if not resume and ckpt.is_file():
        raise FileExistsError(f"{ckpt} holds an unfinished run: continue it with --resume, or delete it to start over")
    device = resolve_device(device)
    x0_all, t5_all, pooled_all = x0_all.to(device), t5_all.to(device), pooled_all.to(device)
    empty_t5, empty_pooled = data["empty_t5"].to(device), data["empty_pooled"].to(device)
    torch.manual_seed(seed)
    model = Flux(config).to(device)
    model.train()
    print(f"base: {sum(p.numel() for p in model.parameters()):,} parameters, {n} cached scenes, {steps} steps x {batch}, on {device}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = max(1, steps // 20)
    gen = torch.Generator().manual_seed(seed)
    settings = dict(config=config.to_dict(), scenes=n, steps=steps, batch=batch, lr=lr, caption_dropout=caption_dropout, seed=seed)
    progress = {"step": 0, "history": [], "window": [], "seconds": 0.0}
    if resume:
        progress = load_checkpoint(ckpt, model, opt, gen, settings)
        print(f"resumed from {ckpt} at step {progress['step']}")
    history, window = progress["history"], progress["window"]
    shift = timestep_shift(h, w)
    ids, tids = image_ids(batch, h, w).to(device), text_ids(batch, t5_all.shape[1]).to(device)
    g = torch.full((batch,), GUIDANCE, device=device)
    t0 = time.time() - progress["seconds"]
    for step in range(progress["step"], steps):
        for group in opt.param_groups:
            group["lr"] = lr * cosine_lr(step, steps, warmup, final_fraction=0.05)
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        x0, t5, pooled = x0_all[idx], t5_all[idx], pooled_all[idx]
        drop = (torch.rand(batch, generator=gen) < caption_dropout).to(device)
        t5 = torch.where(drop[:, None, None], empty_t5[None], t5)
        pooled = torch.where(drop[:, None], empty_pooled[None], pooled)
        t = shifted_logit_normal(batch, shift, gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
        pred = model(pack(xt), ids, t5, tids, t, pooled, g)
        loss = (unpack(pred, h, w) - (noise - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": sum(window) / len(window)})
            print(f"step {step + 1}/{steps} loss {history[-1]['loss']:.4f} lr {opt.param_groups[0]['lr']:.2e} {time.time() - t0:.0f}s", flush=True)
            window.clear()
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            progress = {"step": step + 1, "history": history, "window": window, "seconds": time.time() - t0}
            save_checkpoint(ckpt, model, opt, gen, progress, settings)
    seconds = time.time() - t0
    model.eval()
    store = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    training = dict(scenes=n, steps=steps, batch=batch, lr=lr, caption_dropout=caption_dropout, timestep_shift=shift, seed=seed)
    training.update(stored_dtype=dtype, seconds=round(seconds, 1), history=history)
    info = {"config": config.to_dict(), "guidance": GUIDANCE, "training": training}
    state = {k: v.to(store) for k, v in model.state_dict().items()}
    save_trained(out, state, info, producer="rgbd_world.training.base", flux_config=json.dumps(config.to_dict()))
    ckpt.unlink(missing_ok=True)
    print(f"wrote {out} ({seconds:.0f}s)")
    return out


def main(argv=None):
    p = training_parser(__doc__, steps=1200, batch=64, lr=1e-3)
    p.add_argument("--cache", required=True, help="latent cache of python -m jointdit_trainer preprocess")
    p.add_argument("--hidden", type=int, default=DEFAULT_CONFIG.hidden_size)
    p.add_argument("--heads", type=int, default=DEFAULT_CONFIG.num_heads, help="head dimension hidden/heads must be 64")
    p.add_argument("--double", type=int, default=DEFAULT_CONFIG.depth, help="double-stream blocks")
    p.add_argument("--single", type=int, default=DEFAULT_CONFIG.depth_single_blocks, help="single-stream blocks")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="stored dtype")
    p.add_argument("--checkpoint-every", type=int, default=0, help="write the training state every N steps (0: never)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    p.add_argument("--preview", default=None, help="write a PNG of samples (needs --ae and --text)")
    p.add_argument("--ae", default=None, help="autoencoder file, for --preview")
    p.add_argument("--text", default=None, help="text encoder folder (clip/, t5/), for --preview")
    a = p.parse_args(argv)
    data_manifest = json.loads((Path(a.cache) / "cache.json").read_text())
    c = data_manifest["latent_shape"][0]
    config = FluxConfig(
        in_channels=4 * c,
        vec_in_dim=int(data_manifest["clip_dim"]),
        context_in_dim=int(data_manifest["t5_shape"][1]),
        hidden_size=a.hidden,
        num_heads=a.heads,
        depth=a.double,
        depth_single_blocks=a.single,
        axes_dim=DEFAULT_CONFIG.axes_dim,
        guidance_embed=True,
    )
    path = train_base(a.cache, a.out, config, a.steps, a.batch, a.lr, seed=a.seed, dtype=a.dtype, checkpoint_every=a.checkpoint_every, resume=a.resume, device=a.device)
    if a.preview:
        from jointdit_core.checkpoint import load_flux_weights

        state, cfg = load_flux_weights(path)
        model = Flux(cfg)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        model.eval()
        from ..world.scenes import scene, split_indices

        captions = [scene(i).caption for i in split_indices("test")[:8]]
        write_preview(model, a.ae, a.text, captions, a.preview, tuple(data_manifest["latent_shape"][1:]))
        print(f"wrote {a.preview}: " + " | ".join(captions))


if __name__ == "__main__":
    main()
