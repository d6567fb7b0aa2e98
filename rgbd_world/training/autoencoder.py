"""Train the small autoencoder of the RGB-D world: the Flux autoencoder design at small width.

    python -m rgbd_world.training.autoencoder --data DATASET_DIR --out MODEL_DIR/ae.safetensors [--steps N]

One network encodes both scene images and depth maps (3-channel disparity in [-1, 1], the JointDiT
convention, method §6), as FLUX.1's autoencoder does for JointDiT. Loss: L1 reconstruction of a
posterior sample, plus an L1 term on the chroma (each channel minus the pixel's channel mean), plus a
small KL term (a KL-regularised autoencoder like FLUX.1's). The chroma term matters: the scenes' green-
magenta colour axis has a third of the variance of the blue-orange one (sky against floor), and with
plain L1 the small network had not learnt it after 1000 steps (green objects came back grey).
It trains on whole images: random crops, 4x cheaper, gave a network whose GroupNorm and attention
statistics did not carry over to whole images (depth L1 0.16 instead of 0.01).

After training, the per-channel standard deviation of the latents is folded into the weights (the
encoder's output convolution and the decoder's input convolution, an exact rescaling), so the file
works with FLUX.1's fixed ``scale_factor`` 0.3611 / ``shift_factor`` 0.1159, which every loader assumes
(``jointdit_core.checkpoint.load_autoencoder`` without a config, the trainer, ComfyUI): latents come out
with unit standard deviation per channel, as Flux/SD3 scale them (scale = 1/std). A shift cannot be
folded exactly (the decoder's zero padding), so the small remaining mean is recorded, not removed.

Writes ``ae.safetensors`` (BFL ``ae.safetensors`` key layout, float32) and ``ae.json`` (architecture,
scale/shift, latent statistics, reconstruction errors, training settings).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from jointdit_core.autoencoder import AutoEncoder
from jointdit_core.config import AutoEncoderConfig
from jointdit_trainer.preprocess import resolve_device
from ..cli import command_prog

# ch_mult (2, 2, 2): 64 channels at every level, so every GroupNorm(32) sees 2 channels per group; with
# (1, 2, 2) the decoder's last norm is a per-channel instance norm that erases absolute colour levels.
DEFAULT_CONFIG = AutoEncoderConfig(resolution=64, ch=32, ch_mult=(2, 2, 2), num_res_blocks=1, z_channels=16)


def load_scene_arrays(dataset_dir: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a dataset folder written by ``python -m rgbd_world.world.make_dataset``.

    Returns:
        ``(rgb, disparity, stems)``: rgb uint8 (N, H, W, 3); disparity float32 (N, H, W) normalised per
        image to [0, 1] (near = 1), as stored in ``depth/<stem>.npy``; the sorted stems.
    Raises:
        FileNotFoundError: no images, or an image without its ``depth/<stem>.npy``.
    """
    root = Path(dataset_dir)
    images = sorted((root / "images").glob("*.png"))[:limit]
    if not images:
        raise FileNotFoundError(f"{root}/images holds no PNG; write the dataset with python -m rgbd_world.world.make_dataset")
    rgb, disparity, stems = [], [], []
    for path in images:
        depth_path = root / "depth" / f"{path.stem}.npy"
        if not depth_path.is_file():
            raise FileNotFoundError(f"{depth_path} is missing (write the dataset with --depth-format npy)")
        rgb.append(np.asarray(Image.open(path).convert("RGB")))
        disparity.append(np.load(depth_path).astype(np.float32))
        stems.append(path.stem)
    return np.stack(rgb), np.stack(disparity), stems


def to_model_images(rgb: np.ndarray, disparity: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W, 3) and [0, 1] disparity (N, H, W) -> two float32 (N, 3, H, W) tensors in [-1, 1]."""
    from jointdit_core.depth import disparity_to_model_input
    from jointdit_core.images import uint8_to_model

    x_rgb = uint8_to_model(rgb)
    x_depth = disparity_to_model_input(torch.from_numpy(disparity).clamp(0, 1))
    return x_rgb, x_depth


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over elements of KL(N(mean, exp(logvar)) || N(0, 1)) = 0.5 (mean^2 + var - 1 - logvar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def chroma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> the same minus its per-pixel channel mean (zero for gray images, e.g. depth maps)."""
    return x - x.mean(dim=1, keepdim=True)


def cosine_lr(step: int, total: int, warmup: int, final_fraction: float = 0.1) -> float:
    """Learning-rate multiplier: linear warmup over ``warmup`` steps, then cosine decay to ``final_fraction``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def save_trained(out: Path, state: dict, info: dict, **metadata: str) -> None:
    """Write trained weights ``out`` (safetensors, tensors as given, ``metadata`` in its header) and ``info`` as ``out.json``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out), metadata={"format": "pt", **metadata})
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")


@torch.no_grad()
def fold_latent_scale(ae: AutoEncoder, images: torch.Tensor, batch: int = 64) -> dict:
    """Rescale the latent channels inside the weights so ``ae.encode`` gives unit std per channel.

    With the posterior mean ``m`` (channel c) of std ``s_c`` over ``images``, the encoder's output
    convolution is scaled by ``a_c = 1 / (scale_factor * s_c)`` (log-variance shifted by ``2 log a_c``)
    and the decoder's input convolution by ``1 / a_c``: decode(encode(x)) is unchanged, and the latent
    ``scale_factor * (a_c m - shift_factor)`` has std 1 (SD3/Flux set ``scale_factor = 1/std`` the same way).

    Args:
        images: (N, 3, H, W) in [-1, 1], the images the statistics are taken over.
    Returns:
        {"raw_std": [...], "latent_mean": [...], "latent_std": [...]} per channel, measured after folding.
    """
    z = ae.config.z_channels

    def raw_means() -> torch.Tensor:
        return torch.cat([ae.encoder(images[i : i + batch]).chunk(2, dim=1)[0] for i in range(0, len(images), batch)])

    raw = raw_means()
    raw_std = raw.transpose(0, 1).reshape(z, -1).std(dim=1)
    a = 1.0 / (ae.config.scale_factor * raw_std)
    conv_out, conv_in = ae.encoder.conv_out, ae.decoder.conv_in
    conv_out.weight[:z] *= a[:, None, None, None]
    conv_out.bias[:z] *= a
    conv_out.bias[z:] += 2 * torch.log(a)
    conv_in.weight /= a[None, :, None, None]
    latents = torch.cat([ae.encode(images[i : i + batch]) for i in range(0, len(images), batch)])
    flat = latents.transpose(0, 1).reshape(z, -1)
    return {"raw_std": raw_std.tolist(), "latent_mean": flat.mean(dim=1).tolist(), "latent_std": flat.std(dim=1).tolist()}


@torch.no_grad()
def reconstruction_errors(ae: AutoEncoder, x_rgb: torch.Tensor, x_depth: torch.Tensor, batch: int = 64) -> dict:
    """Mean absolute error in [-1, 1] units of decode(encode(x)) (posterior mean) for rgb and depth images."""
    out = {}
    for name, x in (("rgb_l1", x_rgb), ("depth_l1", x_depth)):
        errs = [(ae.decode(ae.encode(x[i : i + batch])).clamp(-1, 1) - x[i : i + batch]).abs().mean() * len(x[i : i + batch]) for i in range(0, len(x), batch)]
        out[name] = float(sum(errs) / len(x))
    return out


def train_autoencoder(
    data: str | Path,
    out: str | Path,
    config: AutoEncoderConfig = DEFAULT_CONFIG,
    steps: int = 1000,
    batch: int = 8,
    lr: float = 2e-3,
    kl_weight: float = 1e-4,
    chroma_weight: float = 2.0,
    seed: int = 0,
    limit: int | None = None,
    log_every: int = 50,
    device: str = "auto",
) -> Path:
    """Train on ``data`` (a make_dataset folder) and write ``out`` (.safetensors) + ``out`` .json.

    Each step takes ``batch`` scenes and trains on their rgb image and their depth map (2*batch images),
    horizontally flipped at random. AdamW, warmup 5% then cosine decay to 10% of ``lr``. ``device``: "auto"
    (CUDA when present, else the CPU), "cpu", "cuda", ...; the random draws come from a CPU generator
    either way, so batches and noise are the same on every device.

    Returns:
        the path of the written ``.safetensors``.
    Raises:
        FileNotFoundError: see :func:`load_scene_arrays`; ValueError: images not of ``config.resolution``.
    """
    out = Path(out)
    torch.manual_seed(seed)
    rgb, disparity, stems = load_scene_arrays(data, limit)
    if rgb.shape[1] != config.resolution or rgb.shape[2] != config.resolution:
        raise ValueError(f"dataset images are {rgb.shape[2]}x{rgb.shape[1]}, the autoencoder config says {config.resolution}")
    device = resolve_device(device)
    x_rgb, x_depth = (x.to(device) for x in to_model_images(rgb, disparity))
    ae = AutoEncoder(config).to(device)
    ae.train()
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warmup))
    gen = torch.Generator().manual_seed(seed)
    n = len(x_rgb)
    print(f"autoencoder: {sum(p.numel() for p in ae.parameters()):,} parameters, {n} scenes, {steps} steps x {2 * batch} images, on {device}")
    t0 = time.time()
    history = []
    for step in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        x = torch.cat([x_rgb[idx], x_depth[idx]])
        flip = (torch.rand(len(x), generator=gen) < 0.5).to(device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        mean, logvar = ae.encoder(x).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen).to(device)
        rec = ae.decoder(z)
        l1 = (rec - x).abs().mean()
        kl = kl_divergence(mean, logvar)
        loss = l1 + chroma_weight * (chroma(rec) - chroma(x)).abs().mean() + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step == 0:
            rec_rgb, rec_depth = (rec - x).abs().reshape(2, batch, -1).mean(dim=(1, 2)).tolist()
            history.append({"step": step + 1, "l1": l1.item(), "kl": kl.item(), "l1_rgb": rec_rgb, "l1_depth": rec_depth})
            print(f"step {step + 1}/{steps} l1 {l1.item():.4f} (rgb {rec_rgb:.4f}, depth {rec_depth:.4f}) kl {kl.item():.3f} {time.time() - t0:.0f}s", flush=True)
    train_seconds = time.time() - t0
    ae.eval()
    stats_idx = torch.randperm(n, generator=gen)[: min(n, 256)].to(device)
    stats = fold_latent_scale(ae, torch.cat([x_rgb[stats_idx], x_depth[stats_idx]]))
    held = torch.arange(max(0, n - 128), n, device=device)  # last scenes: error report (training data; the test split is never seen)
    errors = reconstruction_errors(ae, x_rgb[held], x_depth[held])
    training = dict(scenes=n, steps=steps, batch_scenes=batch, lr=lr, kl_weight=kl_weight, chroma_weight=chroma_weight, seed=seed)
    training.update(seconds=round(train_seconds, 1), history=history)
    info = {"config": config.to_dict(), "latent_stats": stats, "reconstruction_l1": errors, "training": training}
    save_trained(out, ae.state_dict(), info, producer="rgbd_world.training.autoencoder")
    print(f"wrote {out} ({train_seconds:.0f}s); reconstruction L1 rgb {errors['rgb_l1']:.4f} depth {errors['depth_l1']:.4f}")
    return out


def training_parser(doc: str, steps: int, batch: int, lr: float, batch_help: str | None = None) -> argparse.ArgumentParser:
    """The command-line options the world's trainers share: --out, --steps, --batch, --lr, --seed, --device."""
    p = argparse.ArgumentParser(prog=command_prog(), description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output .safetensors (a .json of the same stem is written too)")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch", type=int, default=batch, help=batch_help)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:1, ...")
    return p


def main(argv=None):
    p = training_parser(__doc__, steps=1000, batch=8, lr=2e-3, batch_help="scenes per step (each gives an rgb and a depth image)")
    p.add_argument("--data", required=True, help="dataset folder (python -m rgbd_world.world.make_dataset)")
    p.add_argument("--kl-weight", type=float, default=1e-4)
    p.add_argument("--chroma-weight", type=float, default=2.0)
    p.add_argument("--ch", type=int, default=DEFAULT_CONFIG.ch)
    p.add_argument("--ch-mult", default=",".join(map(str, DEFAULT_CONFIG.ch_mult)), help="e.g. 1,2,2 (/4) or 1,2,4,4 (/8)")
    p.add_argument("--res-blocks", type=int, default=DEFAULT_CONFIG.num_res_blocks)
    p.add_argument("--z-channels", type=int, default=DEFAULT_CONFIG.z_channels)
    p.add_argument("--resolution", type=int, default=DEFAULT_CONFIG.resolution)
    p.add_argument("--limit", type=int, default=None, help="use only the first N scenes")
    a = p.parse_args(argv)
    config = AutoEncoderConfig(
        resolution=a.resolution, ch=a.ch, ch_mult=tuple(int(c) for c in a.ch_mult.split(",")), num_res_blocks=a.res_blocks, z_channels=a.z_channels
    )
    train_autoencoder(a.data, a.out, config, a.steps, a.batch, a.lr, a.kl_weight, a.chroma_weight, a.seed, a.limit, device=a.device)


if __name__ == "__main__":
    main()
