"""``python -m jointdit_trainer train``: fine-tune the JointDiT addons on a latent cache with accelerate.

The official recipe (spec section 7): the Flux base is frozen; the addons (depth-branch LoRAs, joint
layers) start as the official trainer starts them (joint layers zero, LoRA B zero, LoRA A
xavier-uniform) and train with Adafactor at lr 1e-5 (constant schedule with warmup, no clipping).
Each pair gets timesteps from unbalanced timestep sampling (:mod:`jointdit_trainer.timesteps`); both rows are
noised ``x_t = (1 - t) x0 + t noise`` and the loss is the MSE between the predicted velocity and
``noise - x0`` over both rows. Captions are replaced by the empty prompt with probability 0.1;
the guidance input is 1.0.

Runs as one process, as data parallel processes (``accelerate launch``), or under FSDP/DeepSpeed as
configured by ``accelerate config``. Addon weights stay float32 (the optimizer's master copy); the
frozen base is stored in the mixed-precision dtype and the forward runs under accelerate's autocast.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpointing as ckpt
from .atomic import save_bytes_atomic
from .config import TrainConfig
from .data import CachedPairs, EpochSampler
from .timesteps import sample_timesteps

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"


def resolve_log_with(name: str) -> str | None:
    """"auto" -> "tensorboard" when it is installed, else None (the JSONL log is always written)."""
    if name == "none":
        return None
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        if name == "tensorboard":
            raise ImportError("log_with='tensorboard' needs the tensorboard package: pip install tensorboard") from None
        return None
    return "tensorboard"


def collate(items: list[dict]) -> dict:
    """Stack cached samples: latents (P, C, h, w), t5 (P, T, ctx), clip_pooled (P, vec), index (P,)."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("image_latent", "depth_latent", "t5", "clip_pooled")}
    out["index"] = torch.tensor([it["index"] for it in items])
    return out


def flow_matching_loss(model, batch: dict, empty: dict, cfg: TrainConfig, generator: torch.Generator, device, guidance_embed: bool):
    """One joint training loss (spec section 7).

    Args:
        model: the (wrapped) :class:`~jointdit_core.model.JointDiT`.
        batch: :func:`collate` output (CPU).
        empty: the empty-prompt condition, ``t5`` (T, ctx) and ``clip_pooled`` (vec).
        generator: CPU generator for caption dropout, timesteps and noise (in that order).
    Returns:
        ``(loss, loss_rgb, loss_depth)``: scalar float32 tensors; loss = mean squared error between the
        predicted velocity and ``noise - x0`` over both rows.
    """
    from jointdit_core.latents import image_ids, pack, text_ids, unpack

    x_rgb, x_depth = batch["image_latent"].float(), batch["depth_latent"].float()
    pairs, _, h, w = x_rgb.shape
    t5, pooled = batch["t5"].float(), batch["clip_pooled"].float()
    drop = torch.rand(pairs, generator=generator) < cfg.caption_dropout
    t5 = torch.where(drop[:, None, None], empty["t5"].float()[None], t5)
    pooled = torch.where(drop[:, None], empty["clip_pooled"].float()[None], pooled)
    t_rgb, t_depth, _ = sample_timesteps(
        pairs, generator, cfg.timestep_sampling, cfg.uts_normal_shift, cfg.uts_small_shift, cfg.sigmoid_scale
    )
    x0 = torch.cat([x_rgb, x_depth])
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.cat([t_rgb, t_depth])
    xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
    target = (noise - x0).to(device)
    rows = 2 * pairs
    guidance = torch.full((rows,), float(cfg.guidance_scale), device=device) if guidance_embed else None
    pred = model(
        pack(xt).to(device),
        image_ids(rows, h, w, device=device),
        torch.cat([t5, t5]).to(device),
        text_ids(rows, t5.shape[1], device=device),
        t.to(device),
        torch.cat([pooled, pooled]).to(device),
        guidance,
        asw_strength=cfg.asw_strength,
    )
    err = (unpack(pred.float(), h, w) - target).pow(2)
    loss_rgb, loss_depth = err[:pairs].mean(), err[pairs:].mean()
    return (loss_rgb + loss_depth) / 2, loss_rgb.detach(), loss_depth.detach()


@torch.no_grad()
def joint_samples(model, ae, prompts: list[str], cond: dict, cfg: TrainConfig, depth_transform: str, device, dtype) -> list:
    """Joint generation of each cached sample prompt; returns PIL images (rgb | depth side by side).

    Uses the official sampler settings (flux-shifted schedule, Euler, guidance ``sample_guidance``) at
    ``sample_resolution`` with ``sample_steps`` steps; noise from ``sample_seed`` (fixed across steps).
    """
    import numpy as np
    from PIL import Image

    from jointdit_core.depth import model_output_to_disparity
    from jointdit_core.images import model_to_uint8, unit_to_uint8
    from jointdit_core.latents import image_ids, pack, unpack
    from jointdit_core.sampler import sample, seeded_noise
    from jointdit_core.schedules import flux_shifted_schedule

    res = cfg.sample_resolution or cfg.resolution
    f = ae.config.downscale
    h = w = res // f
    sigmas = flux_shifted_schedule(cfg.sample_steps, (h // 2) * (w // 2))
    images = []
    for i, _ in enumerate(prompts):
        txt = cond["t5"][i : i + 1].to(device, dtype)
        y = cond["clip_pooled"][i : i + 1].to(device, dtype)
        noise_rgb, noise_depth = seeded_noise(cfg.sample_seed + i, (1, ae.config.z_channels, h, w), device=device)
        ids = image_ids(1, h, w, device=device)
        guidance = torch.full((1,), float(cfg.sample_guidance), device=device)

        def velocity(x_rgb, x_depth, t_rgb, t_depth):
            v = model.velocity(x_rgb.to(dtype), x_depth.to(dtype), t_rgb, t_depth, ids, txt, y, guidance, asw_strength=cfg.asw_strength)
            return v[0].float(), v[1].float()

        x_rgb, x_depth = sample(velocity, sigmas, sigmas, pack(noise_rgb), pack(noise_depth))
        decoded = ae.decode(torch.cat([unpack(x_rgb, h, w), unpack(x_depth, h, w)]).to(next(ae.parameters()).dtype)).float()
        rgb = model_to_uint8(decoded[0]).numpy()
        disp = model_output_to_disparity(decoded[1:], depth_transform)[0]
        gray = unit_to_uint8(disp).numpy()
        images.append(Image.fromarray(np.concatenate([rgb, np.repeat(gray[..., None], 3, axis=2)], axis=1)))
    return images


def _hparams(cfg: TrainConfig) -> dict:
    """Scalar config values for TensorBoard's hparams (None and lists are written as strings)."""
    out = {}
    for k, v in cfg.to_dict().items():
        out[k] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    return out


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (written by a run that died before its next checkpoint)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


def train(cfg: TrainConfig) -> Path:
    """Train and write ``<output_dir>/<output_name>.safetensors`` + ``.json``; returns that path.

    Raises:
        FileNotFoundError: base model, cache or resume checkpoint missing.
        ValueError: the cache does not fit the base model or the config (depth_transform, widths).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    out_dir = Path(cfg.output_dir)
    log_with = resolve_log_with(cfg.log_with)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
        rng_types=[],
    )
    try:
        return _train(cfg, accelerator, log_with)
    finally:
        # accelerate keeps its state per process; clear it so train() can run again with other settings
        if accelerator.num_processes > 1:
            accelerator.state.destroy_process_group()
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def lr_factor(step: int, warmup_steps: int, max_steps: int, decay_steps: int = 0) -> float:
    """Learning-rate multiplier for optimizer step ``step`` (0-based): a linear warmup ``step / warmup_steps``,
    then 1.0 (the official constant schedule with warmup, transformers' ``get_constant_schedule_with_warmup``),
    then, when ``decay_steps`` > 0, a linear cooldown over the last ``decay_steps`` steps,
    ``(max_steps - step) / decay_steps`` (not in the official recipe; 0 turns it off).

    transformers' ``get_wsd_schedule(decay_type="linear")`` is the same schedule but computes the cooldown
    as ``1 - progress``, one ulp off on about a fifth of the steps; this form is the one the shipped
    ``rgbd_world`` addons were trained with, so the recipe repeats them exactly."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if decay_steps > 0 and step >= max_steps - decay_steps:
        return max(0.0, (max_steps - step) / decay_steps)
    return 1.0


def _train(cfg: TrainConfig, accelerator, log_with: str | None) -> Path:
    """The body of :func:`train`, given its ``Accelerator``."""
    from accelerate.utils import DistributedType, set_seed
    from torch.optim.lr_scheduler import LambdaLR
    from transformers.optimization import Adafactor

    from jointdit_core.checkpoint import load_autoencoder, load_flux_weights, save_addons
    from jointdit_core.config import LoraRanks
    from jointdit_core.model import JointDiT

    out_dir = Path(cfg.output_dir)
    main = accelerator.is_main_process
    device = accelerator.device
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in ckpt.remove_stale_tmp(out_dir):
            logger.info("removed leftover of an interrupted write: %s", path.name)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)

    # ---------------------------------------------------------------- data
    dataset = CachedPairs(cfg.resolved_cache_dir)
    manifest = dataset.manifest
    if manifest["depth_transform"] != cfg.depth_transform:
        raise ValueError(
            f"the cache was made with depth_transform={manifest['depth_transform']!r} but the config says "
            f"{cfg.depth_transform!r}; re-run preprocess or set depth_transform={manifest['depth_transform']!r}"
        )
    if dataset.skipped:
        accelerator.print(f"{len(dataset.skipped)} samples skipped (details in {out_dir / 'skipped_samples.json'}):")
        for item in dataset.skipped:
            accelerator.print(f"  {item['stem']}: {item['reason']}")
        if main:
            ckpt.save_json_atomic(dataset.skipped, out_dir / "skipped_samples.json")
    empty = dataset.empty_prompt()
    sampler = EpochSampler(len(dataset), cfg.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.train_batch_size, sampler=sampler, num_workers=cfg.dataloader_num_workers, collate_fn=collate,
        persistent_workers=cfg.dataloader_num_workers > 0,
    )

    # ---------------------------------------------------------------- model
    if not cfg.flux_path:
        raise ValueError("set flux_path (the base Flux transformer in the BFL layout, flux1-dev.safetensors)")
    base_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[cfg.mixed_precision]
    state, fcfg = load_flux_weights(cfg.flux_path, device=device, dtype=base_dtype)
    for what, have, want in (
        ("latent channels x4", 4 * manifest["latent_shape"][0], fcfg.in_channels),
        ("T5 width", manifest["t5_shape"][1], fcfg.context_in_dim),
        ("CLIP pooled width", manifest["clip_dim"], fcfg.vec_in_dim),
    ):
        if have != want:
            raise ValueError(f"the cache does not fit the base model: {what} is {have} in the cache, {want} in {cfg.flux_path}")
    with torch.device("meta"):
        model = JointDiT(fcfg, LoraRanks(**cfg.lora_ranks))
    model.base.load_state_dict(state, strict=True, assign=True)
    del state
    model.addons.to_empty(device="cpu")
    torch.manual_seed(cfg.seed)
    model.addons.reset_parameters_official()
    model.addons.to(device=device, dtype=torch.float32)
    model.freeze_base()
    model.set_gradient_checkpointing(cfg.gradient_checkpointing)
    model.train()
    n_train = sum(p.numel() for p in model.addons.parameters())
    accelerator.print(f"trainable addon parameters: {n_train:,}; frozen base: {sum(p.numel() for p in model.base.parameters()):,}")

    optimizer = Adafactor(
        list(model.addons.parameters()), lr=cfg.learning_rate, scale_parameter=False, relative_step=False, warmup_init=False
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    max_steps = cfg.max_train_steps or cfg.max_train_epochs * steps_per_epoch
    if cfg.lr_decay_steps > max_steps:
        raise ValueError(f"lr_decay_steps={cfg.lr_decay_steps} is more than the run's {max_steps} steps; lower it")
    scheduler = LambdaLR(optimizer, functools.partial(lr_factor, warmup_steps=cfg.lr_warmup_steps, max_steps=max_steps, decay_steps=cfg.lr_decay_steps))
    if sharded:
        scheduler = accelerator.prepare(scheduler)
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + accelerator.process_index)

    # ---------------------------------------------------------------- resume
    global_step = 0
    resume = ckpt.resolve_resume(cfg.resume_from, out_dir)
    if resume is not None:
        addon_state, opt_state, info = ckpt.read_training_state(resume)
        if sharded:
            accelerator.load_state(str(resume / "accelerate_state"))
        else:
            accelerator.unwrap_model(model).addons.load_state_dict(addon_state, strict=True)
            optimizer.load_state_dict(opt_state)
            scheduler.load_state_dict(info["scheduler"])
        rng = resume / f"rng_rank{accelerator.process_index}.safetensors"
        if rng.is_file():
            ckpt.restore_rng(rng, generator)
        else:
            logger.warning("no RNG state for process %d in %s; the noise stream restarts", accelerator.process_index, resume)
        if info.get("world_size") != accelerator.num_processes:
            logger.warning("resuming with %d processes, the checkpoint had %s: data order differs", accelerator.num_processes, info.get("world_size"))
        global_step = int(info["step"])
        accelerator.print(f"resumed from {resume} at step {global_step}")
    elif cfg.resume_from:
        accelerator.print(f"resume_from={cfg.resume_from}: no checkpoint yet in {out_dir}, starting from step 0")

    log_path = out_dir / "logs" / LOG_FILE
    if main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _trim_log(log_path, global_step)
    if log_with:
        accelerator.init_trackers("jointdit", config=_hparams(cfg))

    # ---------------------------------------------------------------- samples
    ae = sample_cond = None
    sampling = (cfg.sample_every_n_steps > 0 or cfg.sample_at_first) and cfg.ae_path
    if sampling and sharded:
        logger.warning("periodic samples are not taken under FSDP/DeepSpeed")
        sampling = False
    if sampling:
        found = dataset.sample_prompts()
        if found is None or not found[0]:
            accelerator.print("no sample prompts in the cache (sample_prompts at preprocess time); periodic samples are off")
            sampling = False
        elif main:
            prompts, sample_cond = found
            ae = load_autoencoder(cfg.ae_path, device=device, dtype=base_dtype if device.type == "cuda" else torch.float32)

    def take_samples(step: int) -> None:
        if not sampling:
            return
        if main:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.eval()
            dtype = base_dtype if device.type == "cuda" else torch.float32
            with accelerator.autocast():
                images = joint_samples(unwrapped, ae, prompts, sample_cond, cfg, manifest["depth_transform"], device, dtype)
            unwrapped.train()
            tb = next((t for t in accelerator.trackers if t.name == "tensorboard"), None)
            for i, im in enumerate(images):
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                save_bytes_atomic(buf.getvalue(), out_dir / "samples" / f"step{step:06d}_{i}.png")
                if tb is not None:
                    import numpy as np

                    tb.writer.add_image(f"sample_{i}", np.asarray(im), step, dataformats="HWC")
        accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- checkpoints
    sidecar = {"depth_transform": manifest["depth_transform"]}  # save_addons adds the official defaults of the other flags

    def addon_state_dict() -> dict:
        if sharded:
            full = accelerator.get_state_dict(model)
            return {k[len("addons.") :]: v for k, v in full.items() if k.startswith("addons.")}
        return accelerator.unwrap_model(model).addons.state_dict()

    def save_checkpoint(step: int, epoch: int) -> None:
        tmp = ckpt.tmp_checkpoint_dir(out_dir, step)
        if main:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        if sharded:
            accelerator.save_state(str(tmp / "accelerate_state"), safe_serialization=True)
        addons = addon_state_dict()
        tensors, meta = ckpt.capture_rng(generator)
        ckpt.save_safetensors_atomic(tensors, tmp / f"rng_rank{accelerator.process_index}.safetensors", metadata=meta)
        if main:
            save_addons(tmp / f"{cfg.output_name}.safetensors", addons, sidecar, dtype=torch.bfloat16, config=fcfg)
            info = {"step": step, "epoch": epoch, "world_size": accelerator.num_processes, "config": cfg.to_dict()}
            ckpt.write_training_state(tmp, addons, None if sharded else optimizer.state_dict(), scheduler.state_dict(), info)
        accelerator.wait_for_everyone()
        if main:
            final = ckpt.publish_checkpoint(tmp, out_dir, step, cfg.keep_last_n_checkpoints)
            accelerator.print(f"\nsaved {final}")
        accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- loop
    accelerator.print(
        f"training: {len(dataset)} pairs, batch {cfg.train_batch_size} x {accelerator.num_processes} processes x "
        f"{cfg.gradient_accumulation_steps} accumulation, {steps_per_epoch} steps/epoch, {max_steps} steps"
    )
    if cfg.sample_at_first and global_step == 0:
        take_samples(0)
    progress = tqdm(total=max_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process)
    guidance_embed = fcfg.guidance_embed
    epoch = global_step // steps_per_epoch
    last_saved = global_step if resume is not None else -1
    window: list[tuple[float, float, float]] = []
    t_start = time.time()
    while global_step < max_steps:
        sampler.set_epoch(epoch)
        skip = (global_step - epoch * steps_per_epoch) * cfg.gradient_accumulation_steps
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        if hasattr(batches, "set_epoch"):  # accelerate's loaders re-set the sampler epoch from their own counter
            batches.set_epoch(epoch)
        for batch in batches:
            with accelerator.accumulate(model):
                loss, loss_rgb, loss_depth = flow_matching_loss(model, batch, empty, cfg, generator, device, guidance_embed)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window.append((loss.detach().item(), loss_rgb.item(), loss_depth.item()))
            if not accelerator.sync_gradients:
                continue
            if not sharded:
                scheduler.step()
            global_step += 1
            progress.update(1)
            mean = torch.tensor(window, device=device).mean(0)
            mean = accelerator.reduce(mean, "mean") if accelerator.num_processes > 1 else mean
            window.clear()
            record = {
                "step": global_step,
                "epoch": epoch,
                "loss": mean[0].item(),
                "loss_rgb": mean[1].item(),
                "loss_depth": mean[2].item(),
                "lr": scheduler.get_last_lr()[0],
            }
            progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            if main and global_step % cfg.log_every_n_steps == 0:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(dict(record, time=round(time.time() - t_start, 3))) + "\n")
                accelerator.log({k: v for k, v in record.items() if k not in ("step", "epoch")}, step=global_step)
            if cfg.sample_every_n_steps > 0 and global_step % cfg.sample_every_n_steps == 0:
                take_samples(global_step)
            if cfg.save_every_n_steps > 0 and global_step % cfg.save_every_n_steps == 0:
                save_checkpoint(global_step, epoch)
                last_saved = global_step
            if global_step >= max_steps:
                break
        else:
            epoch += 1
            continue
        break
    progress.close()

    if cfg.save_at_end and last_saved != global_step:
        save_checkpoint(global_step, epoch)
    final = out_dir / f"{cfg.output_name}.safetensors"
    addons = addon_state_dict()
    if main:
        save_addons(final, addons, sidecar, dtype=torch.bfloat16, config=fcfg)
        accelerator.print(f"wrote {final} (+ {final.with_suffix('.json').name})")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final
