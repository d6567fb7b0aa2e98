"""``python -m jointdit_trainer train``: fine-tune the JointDiT addons on a latent cache with accelerate.

The official recipe (docs/method.md §7): the Flux base is frozen; the addons (depth-branch LoRAs, joint
layers) start as the official trainer starts them (joint layers zero, LoRA B zero, LoRA A
xavier-uniform) and train with Adafactor at lr 1e-5 (constant schedule with warmup, no clipping).
Each pair gets timesteps from unbalanced timestep sampling (:mod:`jointdit_trainer.timesteps`); both rows are
noised ``x_t = (1 - t) x0 + t noise`` and the loss is the MSE between the predicted velocity and
``noise - x0`` over both rows. Captions are replaced by the empty prompt with probability 0.1;
the guidance input is 1.0.

Runs as one process, as data parallel processes (``accelerate launch``), or under FSDP/DeepSpeed as
configured by ``accelerate config``. Addon weights stay float32 (the optimizer's master copy); the
frozen base is stored in the mixed-precision dtype and the forward runs under accelerate's autocast.

A run in parts: :func:`setup` (output folder, data, model, optimizer, schedule) builds a
:class:`TrainingRun`; :func:`resume` restores it from a verified checkpoint; :func:`train_step` and
:func:`end_step` advance it; :func:`save_checkpoint` / :func:`save_final` write it; :func:`take_samples`
previews it. :func:`train` holds the output folder's lock around all of it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from jointdit_core.files import save_json_atomic, save_safetensors_atomic

from . import checkpointing as ckpt
from .config import TrainConfig
from .data import CachedPairs, EpochSampler
from .lock import OutputFolderBusy, output_lock
from .manifest import DamagedCheckpoint
from .manifest import write as write_manifest
from .previews import SAMPLES_DIR, Previews, joint_samples, save_previews
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
    """Stack cached samples: latents (P, C, h, w), t5 (P, T, ctx), clip_pooled (P, vec), index (P,), and
    depth_valid (P, h, w) when the cache holds sparse depth."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("image_latent", "depth_latent", "t5", "clip_pooled")}
    if "depth_valid" in items[0]:
        out["depth_valid"] = torch.stack([it["depth_valid"] for it in items])
    out["index"] = torch.tensor([it["index"] for it in items])
    return out


def flow_matching_loss(model, batch: dict, empty: dict, cfg: TrainConfig, generator: torch.Generator, device, guidance_embed: bool):
    """One joint training loss (docs/method.md §7).

    Args:
        model: the (wrapped) :class:`~jointdit_core.model.JointDiT`.
        batch: :func:`collate` output (CPU).
        empty: the empty-prompt condition, ``t5`` (T, ctx) and ``clip_pooled`` (vec).
        generator: CPU generator for caption dropout, timesteps and noise (in that order).
    Returns:
        ``(loss, loss_rgb, loss_depth)``: scalar float32 tensors; loss = mean squared error between the
        predicted velocity and ``noise - x0`` over both rows (the mean of the two rows' losses). With
        ``batch["depth_valid"]`` (sparse depth) the depth row's error is weighted per latent cell by it
        (:func:`~jointdit_trainer.sparse_depth.masked_mean`): cells without a measurement are ignored.
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
    loss_rgb = err[:pairs].mean()
    if "depth_valid" in batch:  # sparse depth: each latent cell weighted by its share of measured pixels
        from .sparse_depth import masked_mean

        loss_depth = masked_mean(err[pairs:], batch["depth_valid"].to(err.device))
    else:
        loss_depth = err[pairs:].mean()
    return (loss_rgb + loss_depth) / 2, loss_rgb.detach(), loss_depth.detach()


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


class TrainingError(RuntimeError):
    """A run that cannot go on: a busy output folder, no intact checkpoint, a non-finite loss or weights.

    The message says what happened and what to do; ``python -m jointdit_trainer`` prints it without a
    traceback and exits with status 1.
    """


@dataclass
class TrainingRun:
    """The state one run's parts share: :func:`setup` builds it, :func:`resume`, :func:`train_step`,
    :func:`end_step`, :func:`save_checkpoint` and :func:`take_samples` read and advance it."""

    cfg: TrainConfig
    accelerator: Any
    sharded: bool  # FSDP/DeepSpeed: optimizer sharded, model/optimizer saved with accelerate's save_state
    dataset: CachedPairs
    sampler: EpochSampler
    loader: Any
    empty: dict  # the dropped-caption condition
    model: Any
    fcfg: Any  # the base model's FluxConfig
    optimizer: Any
    scheduler: Any
    generator: torch.Generator  # caption dropout, timesteps and noise of this process
    steps_per_epoch: int
    max_steps: int
    base_dtype: torch.dtype
    previews: Previews | None = None
    step: int = 0  # optimizer steps done
    epoch: int = 0
    last_saved: int = -1  # step of the newest checkpoint of this run (or the one resumed from)
    window: list = field(default_factory=list)  # (loss, loss_rgb, loss_depth) of the micro-batches of this step
    window_skipped: bool = False  # a non-finite loss in this step's micro-batches (nonfinite_loss="skip")
    t_start: float = 0.0  # time.time() when the loop started (the log's "time" counts from it)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def log_path(self) -> Path:
        return self.out_dir / "logs" / LOG_FILE

    @property
    def sidecar(self) -> dict:
        """The addon file's sidecar flags (save_addons adds the official defaults of the other flags)."""
        return {"depth_transform": self.dataset.manifest["depth_transform"]}


def train(cfg: TrainConfig) -> Path:
    """Train and write ``<output_dir>/<output_name>.safetensors`` + ``.json``; returns that path.

    Raises:
        FileNotFoundError: base model, cache or resume checkpoint missing.
        ValueError: the cache does not fit the base model or the config (depth_transform, widths).
        TrainingError: another training holds ``output_dir``; no intact checkpoint to resume from;
            a non-finite loss (``nonfinite_loss="stop"``) or non-finite addon weights.
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
        with output_lock(out_dir) if accelerator.is_main_process else contextlib.nullcontext():
            return _train(cfg, accelerator, log_with)
    except OutputFolderBusy as exc:
        raise TrainingError(str(exc)) from None
    finally:
        # accelerate keeps its state per process; clear it so train() can run again with other settings
        if accelerator.num_processes > 1:
            accelerator.state.destroy_process_group()
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def _train(cfg: TrainConfig, accelerator, log_with: str | None) -> Path:
    """The body of :func:`train`, given its ``Accelerator``: setup, resume, the loop, the final file."""
    run = setup(cfg, accelerator)
    resume(run)
    start_logs(run, log_with)
    run.previews = setup_previews(run)
    accelerator.print(
        f"training: {len(run.dataset)} pairs, batch {cfg.train_batch_size} x {accelerator.num_processes} processes x "
        f"{cfg.gradient_accumulation_steps} accumulation, {run.steps_per_epoch} steps/epoch, {run.max_steps} steps"
    )
    if cfg.sample_at_first and run.step == 0:
        take_samples(run)
    progress = tqdm(total=run.max_steps, initial=run.step, desc="steps", disable=not accelerator.is_local_main_process)
    run.epoch, run.t_start = run.step // run.steps_per_epoch, time.time()
    while run.step < run.max_steps:
        if run_epoch(run, progress):
            run.epoch += 1
    progress.close()
    if cfg.save_at_end and run.last_saved != run.step:
        save_checkpoint(run)
    return save_final(run)


# ----------------------------------------------------------------------------- setup


def _is_sharded(accelerator) -> bool:
    """True under FSDP or DeepSpeed (the optimizer is sharded across processes)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def setup(cfg: TrainConfig, accelerator) -> TrainingRun:
    """Output folder, data, model, optimizer and learning-rate schedule of a run (nothing resumed yet)."""
    from accelerate.utils import set_seed
    from torch.optim.lr_scheduler import LambdaLR
    from transformers.optimization import Adafactor

    out_dir = Path(cfg.output_dir)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in ckpt.remove_stale_tmp(out_dir) + ckpt.remove_stale_tmp(out_dir / SAMPLES_DIR):
            logger.info("removed leftover of an interrupted write: %s", path.relative_to(out_dir))
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    dataset, sampler, loader = load_data(cfg, accelerator)
    base_dtype = cfg.base_dtype
    model, fcfg = build_model(cfg, dataset.manifest, accelerator.device, base_dtype)
    accelerator.print(f"trainable addon parameters: {sum(p.numel() for p in model.addons.parameters()):,}; "
                      f"frozen base: {sum(p.numel() for p in model.base.parameters()):,}")
    optimizer = Adafactor(
        list(model.addons.parameters()), lr=cfg.learning_rate, scale_parameter=False, relative_step=False, warmup_init=False
    )
    for name in ("blocks_to_swap", "fused_backward_pass"):
        if getattr(cfg, name) and (accelerator.num_processes > 1 or _is_sharded(accelerator)):
            raise ValueError(f"{name} works in a single process; turn it off for multi-GPU or FSDP/DeepSpeed runs")
    if cfg.fused_backward_pass:
        fuse_optimizer_step(list(model.addons.parameters()), optimizer)
    placed = cfg.blocks_to_swap == 0  # swapped blocks stay in CPU memory: accelerate must not move the model
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader, device_placement=[placed, True, True])
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    max_steps = cfg.max_train_steps or cfg.max_train_epochs * steps_per_epoch
    if cfg.lr_decay_steps > max_steps:
        raise ValueError(f"lr_decay_steps={cfg.lr_decay_steps} is more than the run's {max_steps} steps; lower it")
    schedule = functools.partial(lr_factor, warmup_steps=cfg.lr_warmup_steps, max_steps=max_steps, decay_steps=cfg.lr_decay_steps)
    return TrainingRun(
        cfg=cfg, accelerator=accelerator, sharded=_is_sharded(accelerator), dataset=dataset, sampler=sampler, loader=loader,
        empty=dataset.empty_prompt(), model=model, fcfg=fcfg, optimizer=optimizer, scheduler=LambdaLR(optimizer, schedule),
        generator=torch.Generator().manual_seed(cfg.seed * 1000 + accelerator.process_index),
        steps_per_epoch=steps_per_epoch, max_steps=max_steps, base_dtype=base_dtype,
    )


def fuse_optimizer_step(params: list[torch.nn.Parameter], optimizer) -> None:
    """Update each parameter as soon as its gradient is complete and free that gradient (kohya's
    ``--fused_backward_pass``), so at most one addon gradient exists at a time instead of all of them.

    ``optimizer.step()`` updates only parameters that hold a gradient, and during the backward only the
    one whose hook fires does, so each update is the one the unfused step would make (Adafactor without
    ``scale_parameter``/``relative_step`` updates every tensor on its own; no clipping, no accumulation).
    The training loop's own ``optimizer.step()`` then finds no gradient and does nothing.
    """

    def step(param: torch.Tensor) -> None:
        optimizer.step()
        param.grad = None

    for param in params:
        param.register_post_accumulate_grad_hook(step)


def load_data(cfg: TrainConfig, accelerator) -> tuple[CachedPairs, EpochSampler, Any]:
    """The cached pairs (skipped ones listed), their epoch sampler and the data loader.

    Raises:
        ValueError: the cache was made with another ``depth_transform``.
    """
    out_dir = Path(cfg.output_dir)
    dataset = CachedPairs(cfg.resolved_cache_dir)
    made_with = dataset.manifest["depth_transform"]
    if made_with != cfg.depth_transform:
        raise ValueError(
            f"the cache was made with depth_transform={made_with!r} but the config says "
            f"{cfg.depth_transform!r}; re-run preprocess or set depth_transform={made_with!r}"
        )
    if dataset.skipped:
        accelerator.print(f"{len(dataset.skipped)} samples skipped (details in {out_dir / 'skipped_samples.json'}):")
        for item in dataset.skipped:
            accelerator.print(f"  {item['stem']}: {item['reason']}")
        if accelerator.is_main_process:
            save_json_atomic(dataset.skipped, out_dir / "skipped_samples.json")
    sampler = EpochSampler(len(dataset), cfg.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.train_batch_size, sampler=sampler, num_workers=cfg.dataloader_num_workers, collate_fn=collate,
        persistent_workers=cfg.dataloader_num_workers > 0,
    )
    return dataset, sampler, loader


def build_model(cfg: TrainConfig, cache_manifest: dict, device, base_dtype: torch.dtype):
    """The JointDiT with the frozen base (``base_dtype``) and float32 addons started as the official trainer
    starts them; returns ``(model, flux_config)``. With ``fp8_base`` or ``blocks_to_swap`` the base is loaded
    in CPU memory and placed by :func:`~jointdit_trainer.frozen_base.place_frozen_base`.

    Raises:
        ValueError: no ``flux_path``, or a cache whose widths do not fit the base model.
    """
    from jointdit_core.checkpoint import load_flux_weights
    from jointdit_core.config import LoraRanks
    from jointdit_core.model import JointDiT

    if not cfg.flux_path:
        raise ValueError("set flux_path (the base Flux transformer in the BFL layout, flux1-dev.safetensors)")
    low_memory = cfg.fp8_base or cfg.blocks_to_swap > 0
    state, fcfg = load_flux_weights(cfg.flux_path, device="cpu" if low_memory else device, dtype=base_dtype)
    for what, have, want in (
        ("latent channels x4", 4 * cache_manifest["latent_shape"][0], fcfg.in_channels),
        ("T5 width", cache_manifest["t5_shape"][1], fcfg.context_in_dim),
        ("CLIP pooled width", cache_manifest["clip_dim"], fcfg.vec_in_dim),
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
    if low_memory:
        from .frozen_base import place_frozen_base

        place_frozen_base(model.base, device, cfg.fp8_base, cfg.blocks_to_swap)
    model.set_gradient_checkpointing(cfg.gradient_checkpointing)
    model.train()
    return model, fcfg


def start_logs(run: TrainingRun, log_with: str | None) -> None:
    """Drop log lines after the resumed step; start the trackers (TensorBoard)."""
    if run.main:
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        _trim_log(run.log_path, run.step)
    if log_with:
        run.accelerator.init_trackers("jointdit", config=_hparams(run.cfg))



# ----------------------------------------------------------------------------- resume


def choose_checkpoint(run: TrainingRun) -> Path | None:
    """The checkpoint to resume from (verified on the main process, the same for every process), or None.

    Raises:
        TrainingError: the explicit checkpoint is missing or damaged, or every checkpoint is damaged.
    """
    choice: list = [None, None]  # path, error message
    if run.main:
        try:
            found = ckpt.resolve_resume(run.cfg.resume_from, run.out_dir)
            choice = [str(found) if found else None, None]
        except (FileNotFoundError, DamagedCheckpoint) as exc:
            choice = [None, str(exc)]
    if run.accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(choice)
    if choice[1]:
        raise TrainingError(choice[1])
    return Path(choice[0]) if choice[0] else None


def resume(run: TrainingRun) -> None:
    """Restore addons, optimizer, scheduler, RNG and step from the checkpoint ``resume_from`` names."""
    acc = run.accelerator
    folder = choose_checkpoint(run)
    if folder is None:
        if run.cfg.resume_from:
            acc.print(f"resume_from={run.cfg.resume_from}: no checkpoint yet in {run.out_dir}, starting from step 0")
        return
    addon_state, opt_state, info = ckpt.read_training_state(folder)
    if run.sharded:
        logger.warning("loading %s with accelerate's load_state, which unpickles its files; the folder's checksums "
                       "and signature were verified first (written by this trainer on this account)", folder / "accelerate_state")
        acc.load_state(str(folder / "accelerate_state"))
    else:
        acc.unwrap_model(run.model).addons.load_state_dict(addon_state, strict=True)
        run.optimizer.load_state_dict(opt_state)
    run.scheduler.load_state_dict(info["scheduler"])
    rng = folder / f"rng_rank{acc.process_index}.safetensors"
    if rng.is_file():
        ckpt.restore_rng(rng, run.generator)
    else:
        logger.warning("no RNG state for process %d in %s; the noise stream restarts", acc.process_index, folder)
    if info.get("world_size") != acc.num_processes:
        logger.warning("resuming with %d processes, the checkpoint had %s: data order differs", acc.num_processes, info.get("world_size"))
    run.step = run.last_saved = int(info["step"])
    acc.print(f"resumed from {folder} at step {run.step}")


# ----------------------------------------------------------------------------- steps


def run_epoch(run: TrainingRun, progress) -> bool:
    """Train from the current position in epoch ``run.epoch``; True when the epoch ended, False when
    ``max_steps`` was reached inside it."""
    acc, cfg = run.accelerator, run.cfg
    run.sampler.set_epoch(run.epoch)
    skip = (run.step - run.epoch * run.steps_per_epoch) * cfg.gradient_accumulation_steps
    batches = acc.skip_first_batches(run.loader, skip) if skip else run.loader
    if hasattr(batches, "set_epoch"):  # accelerate's loaders re-set the sampler epoch from their own counter
        batches.set_epoch(run.epoch)
    for batch in batches:
        if not train_step(run, batch):
            continue
        end_step(run, progress)
        if run.step >= run.max_steps:
            return False
    return True


def train_step(run: TrainingRun, batch: dict) -> bool:
    """One micro-batch: loss, backward, and at the end of an accumulation window the optimizer step.

    A non-finite loss (on any process) stops the run (``nonfinite_loss="stop"``) or drops the whole
    window's update (``"skip"``). Returns True when the window ended (``sync_gradients``).
    """
    acc, cfg = run.accelerator, run.cfg
    with acc.accumulate(run.model):
        loss, loss_rgb, loss_depth = flow_matching_loss(run.model, batch, run.empty, cfg, run.generator, acc.device, run.fcfg.guidance_embed)
        if _all_finite(run, loss):
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
            run.window.append((loss.detach().item(), loss_rgb.item(), loss_depth.item()))
        else:
            _nonfinite_loss(run, loss, loss_rgb, loss_depth)
        if not (run.window_skipped and acc.sync_gradients):
            run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return acc.sync_gradients


def _all_finite(run: TrainingRun, loss: torch.Tensor) -> bool:
    """True when the loss is finite on every process (all processes must agree to skip a backward)."""
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if run.accelerator.num_processes > 1:
        bad = run.accelerator.reduce(bad, "sum")
    return not bad.item()


def _nonfinite_loss(run: TrainingRun, loss, loss_rgb, loss_depth) -> None:
    """Stop with a clear message, or (``nonfinite_loss="skip"``) mark this step's update as dropped."""
    where = f"step {run.step + 1}: the loss is not finite (loss {loss.item()}, rgb {loss_rgb.item()}, depth {loss_depth.item()}"
    where += ")" if run.accelerator.num_processes == 1 else f" on process {run.accelerator.process_index} or another)"
    if run.cfg.nonfinite_loss == "skip":
        logger.warning("%s; skipping this step's update (nonfinite_loss=skip)", where)
        run.window_skipped = True
        return
    newest = ckpt.list_checkpoints(run.out_dir)
    raise TrainingError(
        f"{where}; stopping, nothing more is saved (newest checkpoint: "
        f"{newest[-1][1] if newest else 'none'}). Look for NaN/Inf in the latent cache (re-run preprocess) or lower "
        "learning_rate; set nonfinite_loss = \"skip\" to skip such steps instead"
    )


def end_step(run: TrainingRun, progress) -> None:
    """After an optimizer step: learning rate, counters, the log line, samples and checkpoints when due."""
    acc, cfg = run.accelerator, run.cfg
    with warnings.catch_warnings():
        if run.window_skipped:  # the schedule advances over a dropped update on purpose
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step..` before `optimizer.step..`")
        run.scheduler.step()
    run.step += 1
    progress.update(1)
    if run.window:
        mean = torch.tensor(run.window, device=acc.device).mean(0)
    else:  # every micro-batch of this step was skipped
        mean = torch.full((3,), float("nan"), device=acc.device)
    mean = acc.reduce(mean, "mean") if acc.num_processes > 1 else mean
    record = {"step": run.step, "epoch": run.epoch, "loss": mean[0].item(), "loss_rgb": mean[1].item(),
              "loss_depth": mean[2].item(), "lr": run.scheduler.get_last_lr()[0]}
    if run.window_skipped:
        record["skipped"] = True
    run.window.clear()
    run.window_skipped = False
    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
    if run.main and run.step % cfg.log_every_n_steps == 0:
        with open(run.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(record, time=round(time.time() - run.t_start, 3))) + "\n")
        acc.log({k: v for k, v in record.items() if k not in ("step", "epoch", "skipped")}, step=run.step)
    if cfg.sample_every_n_steps > 0 and run.step % cfg.sample_every_n_steps == 0:
        take_samples(run)
    if cfg.save_every_n_steps > 0 and run.step % cfg.save_every_n_steps == 0:
        save_checkpoint(run)


# ----------------------------------------------------------------------------- files


def addon_state_dict(run: TrainingRun) -> dict:
    """The addons' float32 state dict (official keys); under FSDP/DeepSpeed gathered on the main process.

    Raises:
        TrainingError: an addon weight holds NaN or an infinity (never written to a file).
    """
    if run.sharded:
        full = run.accelerator.get_state_dict(run.model)
        state = {k[len("addons.") :]: v for k, v in full.items() if k.startswith("addons.")}
    else:
        state = run.accelerator.unwrap_model(run.model).addons.state_dict()
    bad = ckpt.nonfinite_keys(state)
    if bad:
        raise TrainingError(
            f"step {run.step}: the addon weights hold NaN or infinite values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
            "they are not saved. Resume from the newest checkpoint with a lower learning_rate"
        )
    return state


def save_checkpoint(run: TrainingRun) -> None:
    """Write ``checkpoint-<step>`` under a temporary name with its checksums, then rename it into place."""
    from jointdit_core.checkpoint import save_addons

    acc = run.accelerator
    addons = addon_state_dict(run)  # first: non-finite weights stop the run before any file is written
    tmp = ckpt.tmp_checkpoint_dir(run.out_dir, run.step)
    if run.main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    if run.sharded:
        acc.save_state(str(tmp / "accelerate_state"), safe_serialization=True)
    tensors, meta = ckpt.capture_rng(run.generator)
    save_safetensors_atomic(tensors, tmp / f"rng_rank{acc.process_index}.safetensors", metadata=meta)
    if run.main:
        save_addons(tmp / f"{run.cfg.output_name}.safetensors", addons, run.sidecar, dtype=torch.bfloat16, config=run.fcfg)
        info = {"step": run.step, "epoch": run.epoch, "world_size": acc.num_processes, "config": run.cfg.to_dict()}
        ckpt.write_training_state(tmp, addons, None if run.sharded else run.optimizer.state_dict(), run.scheduler.state_dict(), info)
    acc.wait_for_everyone()
    if run.main:
        write_manifest(tmp)
        final = ckpt.publish_checkpoint(tmp, run.out_dir, run.step, run.cfg.keep_last_n_checkpoints)
        acc.print(f"\nsaved {final}")
    acc.wait_for_everyone()
    run.last_saved = run.step


def save_final(run: TrainingRun) -> Path:
    """Write ``<output_dir>/<output_name>.safetensors`` + sidecar (bf16, official layout); end the trackers."""
    from jointdit_core.checkpoint import save_addons

    final = run.out_dir / f"{run.cfg.output_name}.safetensors"
    addons = addon_state_dict(run)
    if run.main:
        save_addons(final, addons, run.sidecar, dtype=torch.bfloat16, config=run.fcfg)
        run.accelerator.print(f"wrote {final} (+ {final.with_suffix('.json').name})")
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    return final


# ----------------------------------------------------------------------------- samples


def setup_previews(run: TrainingRun) -> Previews | None:
    """What periodic samples need, or None when they are off (no ae_path, no cached prompts, FSDP/DeepSpeed)."""
    from jointdit_core.checkpoint import load_autoencoder

    cfg, acc = run.cfg, run.accelerator
    if not ((cfg.sample_every_n_steps > 0 or cfg.sample_at_first) and cfg.ae_path):
        return None
    if run.sharded:
        logger.warning("periodic samples are not taken under FSDP/DeepSpeed")
        return None
    found = run.dataset.sample_prompts()
    if found is None or not found[0]:
        acc.print("no sample prompts in the cache (sample_prompts at preprocess time); periodic samples are off")
        return None
    dtype = run.base_dtype if acc.device.type == "cuda" else torch.float32
    ae = load_autoencoder(cfg.ae_path, device=acc.device, dtype=dtype) if run.main else None
    return Previews(prompts=found[0], cond=found[1], ae=ae, dtype=dtype)


def take_samples(run: TrainingRun) -> None:
    """Joint generation of the sample prompts with the current addons -> ``samples/step<step>_<i>.png``."""
    if run.previews is None:
        return
    acc, p = run.accelerator, run.previews
    if run.main:
        model = acc.unwrap_model(run.model)
        model.eval()
        with acc.autocast():
            images = joint_samples(model, p.ae, p.prompts, p.cond, run.cfg, run.dataset.manifest["depth_transform"], acc.device, p.dtype)
        model.train()
        save_previews(images, run.out_dir, run.step, next((t for t in acc.trackers if t.name == "tensorboard"), None))
    acc.wait_for_everyone()
