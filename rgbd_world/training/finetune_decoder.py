"""Fine-tune only the decoder of the RGB-D world's autoencoder.

    python -m rgbd_world.training.finetune_decoder --data DATASET_DIR --ae MODEL_DIR/ae.safetensors --out NEW/ae.safetensors [--steps N]
        [--checkpoint-every 100] [--resume]

The encoder, and so every latent, the folded latent scale, the trainer's latent cache, the base and the
addons trained on them, stay exactly as they are; only what the latents decode to improves. Stability AI
fine-tuned Stable Diffusion's VAE decoder the same way (``sd-vae-ft-mse``) so that the diffusion models
trained on its latents keep working.

Why: the autoencoder's 1000 steps end with its RGB L1 still falling, and its colours drift (red reads as
orange, purple as blue), which costs the caption classifier most of its colour accuracy on round trips.

Loss: L1 of the decoded posterior sample plus ``chroma_weight`` x L1 of its chroma, as
:mod:`rgbd_world.training.autoencoder` (no KL: the posterior does not change). The posteriors (mean and
log-variance of every training image and depth map) are computed once; each step draws fresh samples.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from jointdit_core.checkpoint import load_autoencoder
from jointdit_trainer.preprocess import resolve_device

from .autoencoder import chroma, cosine_lr, load_scene_arrays, reconstruction_errors, save_trained, to_model_images, training_parser
from .base import checkpoint_path, load_checkpoint, save_checkpoint


@torch.no_grad()
def posteriors(ae, images: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder posterior of each image: (mean, log-variance), each (N, z, H/f, W/f) float32 (raw, before the latent scale)."""
    out = [ae.encoder(images[i : i + batch]).chunk(2, dim=1) for i in range(0, len(images), batch)]
    return torch.cat([m for m, _ in out]), torch.cat([lv for _, lv in out]).clamp(-30.0, 20.0)


def finetune_decoder(
    data: str | Path,
    ae_path: str | Path,
    out: str | Path,
    steps: int = 2000,
    batch: int = 8,
    lr: float = 2e-4,
    chroma_weight: float = 2.0,
    seed: int = 0,
    limit: int | None = None,
    log_every: int = 50,
    checkpoint_every: int = 0,
    resume: bool = False,
    device: str = "auto",
) -> Path:
    """Train the decoder of ``ae_path`` on ``data`` and write the whole autoencoder to ``out`` (+ ``.json``).

    Each step decodes fresh posterior samples of ``batch`` scenes' rgb images and depth maps (2*batch
    images in [-1, 1]). AdamW, warmup 5% then cosine decay to 10% of ``lr``; the default ``lr`` is where the
    autoencoder's own training ended (10% of its 2e-3): a larger one first undoes what the decoder knows. The encoder's weights are
    copied unchanged (``out``'s encoder tensors equal ``ae_path``'s bit for bit).

    Long runs go in segments as :func:`rgbd_world.training.base.train_base` does, with its checkpoint format:
    ``checkpoint_every`` > 0 writes the decoder's training state (weights, AdamW moments, random generator,
    loss log) to ``<out stem>.checkpoint.safetensors`` every that many steps, ``resume`` continues from it
    (ending bit for bit where a straight run ends); the checkpoint is removed once ``out`` is written.
    ``device``: "auto" (CUDA when present, else the CPU), "cpu", "cuda", ...; the random draws come from a
    CPU generator on every device.

    Returns:
        ``out``.
    Raises:
        FileNotFoundError: see :func:`~rgbd_world.training.autoencoder.load_scene_arrays`, no ``ae_path``, or
        ``resume`` without a checkpoint; FileExistsError: a checkpoint of an earlier run exists and ``resume``
        is off; ValueError: the images are not of the resolution the autoencoder's ``.json`` names, or the
        checkpoint's settings differ from this run's.
    """
    out, ae_path = Path(out), Path(ae_path)
    ckpt = checkpoint_path(out)
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {ckpt}; start without --resume")
    if not resume and ckpt.is_file():
        raise FileExistsError(f"{ckpt} holds an unfinished run: continue it with --resume, or delete it to start over")
    info = json.loads(ae_path.with_suffix(".json").read_text()) if ae_path.with_suffix(".json").is_file() else {}
    device = resolve_device(device)
    ae = load_autoencoder(ae_path).to(device)
    rgb, disparity, _ = load_scene_arrays(data, limit)
    trained_at = info.get("config", {}).get("resolution")
    if trained_at and rgb.shape[1:3] != (trained_at, trained_at):
        raise ValueError(f"dataset images are {rgb.shape[2]}x{rgb.shape[1]}, the autoencoder was trained at {trained_at} ({ae_path.with_suffix('.json')})")
    x_rgb, x_depth = (x.to(device) for x in to_model_images(rgb, disparity))
    n = len(x_rgb)
    held = torch.arange(max(0, n - 128), n, device=device)
    before = reconstruction_errors(ae, x_rgb[held], x_depth[held])
    t0 = time.time()
    images = torch.cat([x_rgb, x_depth])
    mean, logvar = posteriors(ae, images)
    print(f"decoder fine-tuning: {sum(p.numel() for p in ae.decoder.parameters()):,} parameters, {n} scenes, "
          f"{steps} steps x {2 * batch} images on {device}; posteriors in {time.time() - t0:.0f}s")
    ae.encoder.requires_grad_(False)
    ae.decoder.train()
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(ae.decoder.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = max(1, steps // 20)
    gen = torch.Generator().manual_seed(seed)
    settings = dict(source=ae_path.name, scenes=n, steps=steps, batch=batch, lr=lr, chroma_weight=chroma_weight, seed=seed)
    progress = {"step": 0, "history": [], "seconds": 0.0}
    if resume:
        progress = load_checkpoint(ckpt, ae.decoder, opt, gen, settings)
        print(f"resumed from {ckpt} at step {progress['step']}")
    history = progress["history"]
    t0 = time.time() - progress["seconds"]
    for step in range(progress["step"], steps):
        for group in opt.param_groups:
            group["lr"] = lr * cosine_lr(step, steps, warmup)
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        idx = torch.cat([idx, idx + n])  # each scene's rgb image and its depth map
        x = images[idx]
        m, lv = mean[idx], logvar[idx]
        z = m + torch.exp(0.5 * lv) * torch.randn(m.shape, generator=gen).to(device)
        rec = ae.decoder(z)
        l1 = (rec - x).abs().mean()
        loss = l1 + chroma_weight * (chroma(rec) - chroma(x)).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0 or step == 0:
            rec_rgb, rec_depth = (rec - x).abs().reshape(2, batch, -1).mean(dim=(1, 2)).tolist()
            history.append({"step": step + 1, "l1": l1.item(), "l1_rgb": rec_rgb, "l1_depth": rec_depth})
            print(f"step {step + 1}/{steps} l1 {l1.item():.4f} (rgb {rec_rgb:.4f}, depth {rec_depth:.4f}) {time.time() - t0:.0f}s", flush=True)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            save_checkpoint(ckpt, ae.decoder, opt, gen, {"step": step + 1, "history": history, "seconds": time.time() - t0}, settings)
    seconds = time.time() - t0
    ae.eval()
    after = reconstruction_errors(ae, x_rgb[held], x_depth[held])
    info["reconstruction_l1"] = after
    info["decoder_finetune"] = dict(
        source=ae_path.name, scenes=n, steps=steps, batch_scenes=batch, lr=lr, chroma_weight=chroma_weight, seed=seed,
        seconds=round(seconds, 1), reconstruction_l1_before=before, history=history,
    )
    save_trained(out, ae.state_dict(), info, producer="rgbd_world.training.finetune_decoder")
    ckpt.unlink(missing_ok=True)
    print(f"wrote {out} ({seconds:.0f}s); reconstruction L1 rgb {before['rgb_l1']:.4f} -> {after['rgb_l1']:.4f}, depth {before['depth_l1']:.4f} -> {after['depth_l1']:.4f}")
    return out


def main(argv=None):
    p = training_parser(__doc__, steps=2000, batch=8, lr=2e-4, batch_help="scenes per step (each gives an rgb and a depth image)")
    p.add_argument("--data", required=True, help="dataset folder (python -m rgbd_world.world.make_dataset)")
    p.add_argument("--ae", required=True, help="the trained autoencoder whose decoder is fine-tuned")
    p.add_argument("--chroma-weight", type=float, default=2.0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N scenes")
    p.add_argument("--checkpoint-every", type=int, default=0, help="write the training state every N steps (0: never)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    a = p.parse_args(argv)
    try:
        finetune_decoder(a.data, a.ae, a.out, a.steps, a.batch, a.lr, a.chroma_weight, a.seed, a.limit,
                         checkpoint_every=a.checkpoint_every, resume=a.resume, device=a.device)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        p.error(str(exc))


if __name__ == "__main__":
    main()
