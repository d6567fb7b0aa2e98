"""CPU training runs of the tiny model: loss goes down, files load, resume is exact, SIGKILL is survived."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from jointdit_trainer import manifest
from jointdit_trainer.checkpointing import list_checkpoints, read_training_state
from jointdit_trainer.config import load_config
from jointdit_trainer.train import train
from trainer_tiny import TINY_FLUX, make_cached_setup

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny model files, a 4-sample dataset and its cache (made once for this module)."""
    root = tmp_path_factory.mktemp("trainer_run")
    return root, make_cached_setup(root, n=4)


def config(values: dict, out: Path, **changes):
    merged = {**values, "output_dir": str(out), **changes}
    return load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in merged.items()])


def losses(out: Path) -> list[float]:
    lines = (out / "logs" / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_loss_decreases_and_output_loads(setup):
    root, values = setup
    out = root / "fit"
    final = train(config(values, out, learning_rate=1e-3, max_train_steps=300, save_every_n_steps=0))
    loss = losses(out)
    assert len(loss) == 300
    fifth = len(loss) // 5
    first, last = sum(loss[:fifth]) / fifth, sum(loss[-fifth:]) / fifth
    assert last < 0.88 * first, (first, last)

    from jointdit_core.checkpoint import load_addons, load_jointdit

    loaded = load_addons(final, TINY_FLUX)
    assert loaded.depth_transform == "none"
    assert all(v.dtype == torch.bfloat16 for v in loaded.state_dict.values())
    # the addons trained away from the official start (joint layers and LoRA B start at zero)
    assert loaded.state_dict["double_blocks.0.joint1.weight"].abs().sum() > 0
    assert loaded.state_dict["single_blocks.0.linear1.lora_B.weight"].abs().sum() > 0
    # the final file is the bf16 copy of the last checkpoint's float32 weights
    addon_fp32, _, info = read_training_state(list_checkpoints(out)[-1][1])
    assert info["step"] == 300
    for k, v in addon_fp32.items():
        assert torch.equal(loaded.state_dict[k], v.to(torch.bfloat16)), k
    model, _ = load_jointdit(values["flux_path"], final)
    assert torch.equal(model.addons.txt_in.lora_B.weight, addon_fp32["txt_in.lora_B.weight"].to(torch.bfloat16).float())


def test_resume_continues_exactly(setup):
    root, values = setup
    common = dict(train_batch_size=2, learning_rate=1e-3, save_every_n_steps=0, resume_from="latest")
    straight = root / "straight"
    train(config(values, straight, max_train_steps=12, **common))
    split = root / "split"
    train(config(values, split, max_train_steps=7, **common))  # stops mid-epoch (2 batches per epoch)
    assert [s for s, _ in list_checkpoints(split)] == [7]
    train(config(values, split, max_train_steps=12, **common))
    a = load_file(str(straight / "checkpoint-12" / "training_state.safetensors"))
    b = load_file(str(split / "checkpoint-12" / "training_state.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert losses(straight) == losses(split)


def test_lr_cooldown_follows_the_schedule_and_resumes_exactly(setup):
    """lr_decay_steps: linear cooldown over the last steps; a run stopped inside it and resumed from the
    checkpoint ends bit-identical to the straight run (the schedule depends on max_train_steps only)."""
    import shutil

    root, values = setup
    common = dict(train_batch_size=2, learning_rate=1e-3, lr_warmup_steps=2, lr_decay_steps=4, max_train_steps=12, resume_from="latest")
    straight = root / "cooldown"
    train(config(values, straight, save_every_n_steps=10, **common))
    lrs = [json.loads(line)["lr"] for line in (straight / "logs" / "train_log.jsonl").read_text().splitlines()]
    # logged after step k: the lr of step k + 1 (warmup 1/2, then 1, then the cooldown 3/4, 2/4, 1/4, 0)
    assert lrs == pytest.approx([1e-3 * f for f in [0.5] + [1.0] * 7 + [0.75, 0.5, 0.25, 0.0]])
    resumed = root / "cooldown_resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-10", resumed / "checkpoint-10")
    train(config(values, resumed, save_every_n_steps=0, **common))
    a = load_file(str(straight / "checkpoint-12" / "training_state.safetensors"))
    b = load_file(str(resumed / "checkpoint-12" / "training_state.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="lr_decay_steps"):
        train(config(values, root / "too_long", **dict(common, lr_decay_steps=13)))


def test_lr_factor():
    from jointdit_trainer.train import lr_factor

    assert [lr_factor(s, 2, 10) for s in (0, 1, 2, 9)] == [0.0, 0.5, 1.0, 1.0]  # official: warmup, constant
    assert [lr_factor(s, 0, 10, 4) for s in (5, 6, 7, 9, 10)] == [1.0, 1.0, 0.75, 0.25, 0.0]


def _all_files_readable(out: Path) -> int:
    count = 0
    for step, folder in list_checkpoints(out):
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["checksums.json", "jointdit_addons.json", "jointdit_addons.safetensors", "rng_rank0.safetensors",
                         "training_state.json", "training_state.safetensors"], names
        for path in folder.iterdir():
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():
                        f.get_tensor(key)
            else:
                json.loads(path.read_text())
            count += 1
        assert json.loads((folder / "training_state.json").read_text())["step"] == step
        manifest.verify(folder)  # every file as written
    return count


def test_sigkill_then_resume(setup):
    root, values = setup
    out = root / "killed"
    cfg_path = root / "killed.json"
    cfg_path.write_text(json.dumps({**values, "output_dir": str(out), "learning_rate": 1e-3, "max_train_steps": 300,
                                    "save_every_n_steps": 10, "resume_from": "latest", "keep_last_n_checkpoints": 3}))
    cmd = [sys.executable, "-m", "jointdit_trainer", "train", "--config", str(cfg_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while (not list_checkpoints(out) or list_checkpoints(out)[-1][0] < 20) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)  # kill once checkpoint-20 exists: mid-run, quite likely while a later one is written
    assert proc.poll() is None, "training finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    killed_at = list_checkpoints(out)[-1][0]
    print("killed after checkpoint", killed_at)
    assert 20 <= killed_at < 300, stderr[-2000:]
    _all_files_readable(out)
    assert not (out / "jointdit_addons.safetensors").exists()

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out / f'checkpoint-{killed_at}'} at step {killed_at}" in done.stdout
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps == [280, 290, 300]  # keep_last_n_checkpoints=3
    assert _all_files_readable(out) == 18
    _, _, info = read_training_state(out / "checkpoint-300")
    assert info["step"] == 300
    log_steps = [json.loads(line)["step"] for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert log_steps == list(range(1, 301))  # lines of the killed run after its checkpoint are dropped
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    from jointdit_core.checkpoint import load_addons

    assert load_addons(out / "jointdit_addons.safetensors", TINY_FLUX).depth_transform == "none"


def test_data_parallel_two_processes_resume_exactly(setup):
    """Two CPU processes (gloo DDP) via torchrun, which ``accelerate launch`` uses as well."""
    root, values = setup
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")

    def run(out, steps):
        cfg_path = root / f"{out.name}-{steps}.json"
        cfg_path.write_text(json.dumps({**values, "output_dir": str(out), "learning_rate": 1e-3, "max_train_steps": steps,
                                        "train_batch_size": 1, "save_every_n_steps": 0, "resume_from": "latest"}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "jointdit_trainer", "train", "--config", str(cfg_path)]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert "batch 1 x 2 processes" in run(root / "ddp_straight", 6)
    run(root / "ddp_split", 3)  # epoch = 2 steps (4 pairs / 2 processes): stops mid-epoch
    assert "resumed from" in run(root / "ddp_split", 6)
    folder = root / "ddp_split" / "checkpoint-6"
    assert (folder / "rng_rank0.safetensors").is_file() and (folder / "rng_rank1.safetensors").is_file()
    a = load_file(str(root / "ddp_straight" / "checkpoint-6" / "training_state.safetensors"))
    b = load_file(str(folder / "training_state.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert losses(root / "ddp_straight") == losses(root / "ddp_split")


def test_bf16_checkpointing_samples_and_tensorboard(setup):
    """The official precision settings run on a CPU too; samples and TensorBoard events are written."""
    root, values = setup
    out = root / "bf16"
    final = train(config(values, out, mixed_precision="bf16", gradient_checkpointing=True, max_train_steps=4,
                         save_every_n_steps=0, sample_every_n_steps=2, sample_steps=2, log_with="tensorboard"))
    pngs = sorted(p.name for p in (out / "samples").iterdir())
    assert pngs == ["step000002_0.png", "step000004_0.png"]
    from PIL import Image

    with Image.open(out / "samples" / "step000004_0.png") as im:
        assert im.size == (64, 32)  # rgb | depth at sample_resolution 32
        pixels = torch.from_numpy(np.asarray(im, dtype=np.float32))
    assert pixels.std() > 0
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert [json.loads(line)["step"] for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    from jointdit_core.checkpoint import load_addons

    state = load_addons(final, TINY_FLUX).state_dict
    assert torch.isfinite(torch.cat([v.float().flatten() for v in state.values()])).all()


def test_refuses_a_cache_made_for_another_depth_transform(setup):
    root, values = setup
    with pytest.raises(ValueError, match="cache was made with depth_transform='none'.*re-run preprocess"):
        train(config(values, root / "wrong", depth_transform="inverse", max_train_steps=1))
    with pytest.raises(ValueError, match="set flux_path"):
        train(config(values, root / "wrong", flux_path=None, max_train_steps=1))
