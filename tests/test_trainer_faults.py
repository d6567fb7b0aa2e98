"""Trainer faults: damaged checkpoints, non-finite losses and weights, two runs on one
folder, and accelerate states the trainer did not write."""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from jointdit_trainer import manifest
from jointdit_trainer.__main__ import main
from jointdit_trainer.checkpointing import list_checkpoints
from jointdit_trainer.config import load_config
from jointdit_trainer.train import TrainingError, train
from trainer_tiny import make_cached_setup

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny model files, a 4-sample cache, and a run with checkpoints at steps 3 and 6."""
    root = tmp_path_factory.mktemp("trainer_faults")
    values = make_cached_setup(root, n=4)
    train(config(values, root / "base", max_train_steps=6))
    assert [s for s, _ in list_checkpoints(root / "base")] == [3, 6]
    return root, values


def config(values: dict, out: Path, **changes):
    common = dict(train_batch_size=2, learning_rate=1e-3, save_every_n_steps=3, resume_from="latest")
    merged = {**values, **common, "output_dir": str(out), **changes}
    return load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in merged.items()])


def _copy_base(root: Path, name: str) -> Path:
    out = root / name
    shutil.copytree(root / "base", out)
    return out


def _resume_falls_back_to_step_3(root, values, out, caplog, capsys, reason: str):
    """Resuming skips the damaged checkpoint-6 (named, with the reason), restarts from checkpoint-3 and
    ends bit-identical to the undamaged run."""
    with caplog.at_level(logging.WARNING, logger="jointdit_trainer"):
        train(config(values, out, max_train_steps=6))
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert f"checkpoint {out / 'checkpoint-6'} is damaged" in warning and reason in warning, warning
    assert f"resumed from {out / 'checkpoint-3'} at step 3" in capsys.readouterr().out
    a = load_file(str(root / "base" / "checkpoint-6" / "training_state.safetensors"))
    b = load_file(str(out / "checkpoint-6" / "training_state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_truncated_latest_checkpoint_is_named_and_the_previous_one_resumed(setup, caplog, capsys):
    root, values = setup
    out = _copy_base(root, "truncated")
    state = out / "checkpoint-6" / "training_state.safetensors"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    _resume_falls_back_to_step_3(root, values, out, caplog, capsys, "training_state.safetensors has")


def test_garbage_inside_the_state_file_is_found_and_the_previous_one_resumed(setup, caplog, capsys):
    root, values = setup
    out = _copy_base(root, "garbage")
    state = out / "checkpoint-6" / "training_state.safetensors"
    data = bytearray(state.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = os.urandom(4096)  # same size: only the checksum can tell
    state.write_bytes(bytes(data))
    _resume_falls_back_to_step_3(root, values, out, caplog, capsys, "does not match its sha256")


def test_every_checkpoint_damaged_stops_with_a_message_naming_them(setup):
    root, values = setup
    out = _copy_base(root, "all_damaged")
    for step in (3, 6):
        (out / f"checkpoint-{step}" / "rng_rank0.safetensors").write_bytes(b"junk")
    with pytest.raises(TrainingError, match=r"no intact checkpoint in .*checkpoint-6/rng_rank0.safetensors has 4 bytes.*"
                                            r"checkpoint-3/rng_rank0.safetensors has 4 bytes.*start from step 0"):
        train(config(values, out, max_train_steps=6))
    with pytest.raises(TrainingError, match="cannot resume from .*checkpoint-3: checkpoint-3/rng_rank0.safetensors has 4 bytes"):
        train(config(values, out, max_train_steps=6, resume_from=str(out / "checkpoint-3")))


def _nan_cache(root: Path, values: dict) -> str:
    """A copy of the cache with NaN in one sample's image latent."""
    cache = root / "nan_cache"
    if not cache.exists():
        shutil.copytree(values["cache_dir"], cache)
        path = sorted((cache / "samples").iterdir())[1]
        tensors = load_file(str(path))
        tensors["image_latent"][0, 0, 0] = float("nan")
        save_file(tensors, str(path))
    return str(cache)


def test_nan_loss_stops_with_a_message_and_writes_no_addons(setup, tmp_path, capsys):
    root, values = setup
    out = tmp_path / "nan_stop"
    cfg_path = tmp_path / "nan.json"
    cfg_path.write_text(json.dumps({**values, "cache_dir": _nan_cache(root, values), "output_dir": str(out),
                                    "train_batch_size": 4, "max_train_steps": 3}))
    assert main(["train", "--config", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "training stopped: step 1: the loss is not finite (loss nan" in err and 'nonfinite_loss = "skip"' in err, err
    assert not (out / "jointdit_addons.safetensors").exists() and not list_checkpoints(out)


def test_nan_loss_skip_drops_that_step_and_keeps_the_weights_finite(setup, tmp_path):
    from jointdit_core.checkpoint import load_addons

    root, values = setup
    out = tmp_path / "nan_skip"
    final = train(config(dict(values, cache_dir=_nan_cache(root, values)), out, train_batch_size=1, max_train_steps=4,
                         save_every_n_steps=0, nonfinite_loss="skip"))
    records = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert sum(bool(r.get("skipped")) for r in records) == 1  # the NaN sample comes once per epoch of 4 steps
    assert load_addons(final).state_dict  # load_addons refuses non-finite weights


def test_nonfinite_weights_are_never_published(setup, tmp_path):
    root, values = setup
    out = tmp_path / "inf_lr"
    with pytest.raises(TrainingError, match="step 1: the addon weights hold NaN or infinite values .*not saved"):
        train(config(values, out, learning_rate=float("inf"), max_train_steps=1, save_every_n_steps=1))
    assert not list_checkpoints(out) and not (out / "jointdit_addons.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.startswith("checkpoint")]


def test_a_preview_left_half_written_by_a_killed_run_is_removed_at_the_next_start(setup, tmp_path):
    root, values = setup
    out = tmp_path / "killed_while_previewing"
    samples = out / "samples"
    samples.mkdir(parents=True)
    (samples / "step000002_0.png").write_bytes(b"a finished preview")
    stale = samples / "step000004_0.png.tmp-k1ll3d"  # what save_bytes_atomic leaves when killed mid-write
    stale.write_bytes(b"half a png")
    train(config(values, out, max_train_steps=1, save_every_n_steps=0))
    assert not stale.exists()
    assert (samples / "step000002_0.png").read_bytes() == b"a finished preview"


def test_second_training_on_the_same_folder_names_the_first(setup, tmp_path):
    root, values = setup
    out = tmp_path / "locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom jointdit_trainer.lock import output_lock\n"
                               "with output_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)", str(out)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        expected = f"output_dir {out} is in use by another training (process {holder.pid} on host {socket.gethostname()}, started"
        with pytest.raises(TrainingError) as refused:
            train(config(values, out, max_train_steps=1))
        assert str(refused.value).startswith(expected), str(refused.value)
        assert not (out / "logs").exists()  # the second run touched nothing
    finally:
        holder.kill()  # SIGKILL: the OS drops the lock with the process
        holder.wait()
        holder.stdout.close()
    train(config(values, out, max_train_steps=1, save_every_n_steps=0))
    assert [s for s, _ in list_checkpoints(out)] == [1]


@pytest.fixture()
def sharded(monkeypatch):
    """Run the FSDP/DeepSpeed code path (accelerate's save_state/load_state) in one CPU process."""
    import jointdit_trainer.train as train_module

    monkeypatch.setattr(train_module, "_is_sharded", lambda accelerator: True)


def test_accelerate_state_is_loaded_only_when_signed_by_this_trainer(setup, tmp_path, sharded, monkeypatch, capsys):
    from accelerate import Accelerator

    root, values = setup
    out = tmp_path / "sharded"
    train(config(values, out, max_train_steps=2, save_every_n_steps=2))
    folder = out / "checkpoint-2"
    assert (folder / "accelerate_state").is_dir() and "accelerate_state/optimizer.bin" in json.loads((folder / "checksums.json").read_text())["files"]
    train(config(values, out, max_train_steps=3, save_every_n_steps=0))  # its own state: loaded
    assert f"resumed from {folder} at step 2" in capsys.readouterr().out

    loads = []
    monkeypatch.setattr(Accelerator, "load_state", lambda self, *a, **k: loads.append(a))
    # someone else's folder: hashes recomputed with another key (as anyone can), or no manifest at all
    (folder / "accelerate_state" / "optimizer.bin").write_bytes(b"\x80\x04 a pickle that runs code when loaded")
    with pytest.MonkeyPatch.context() as other:
        other.setenv("JOINTDIT_TRAINER_KEY_FILE", str(tmp_path / "someone_else.key"))
        manifest.write(folder)
    with pytest.raises(TrainingError, match=r"checkpoint-2 is not signed with this machine's trainer key .*unpickled"):
        train(config(values, out, max_train_steps=3, save_every_n_steps=0, resume_from=str(folder)))
    (folder / "checksums.json").unlink()
    with pytest.raises(TrainingError, match="checkpoint-2 has no checksums.json.*not loaded without a signed manifest"):
        train(config(values, out, max_train_steps=3, save_every_n_steps=0, resume_from=str(folder)))
    assert loads == []


def test_checkpoint_of_an_earlier_trainer_without_checksums_still_resumes(setup, caplog):
    from jointdit_trainer.checkpointing import resolve_resume

    root, _ = setup
    out = _copy_base(root, "earlier_version")
    (out / "checkpoint-6" / "checksums.json").unlink()
    with caplog.at_level(logging.WARNING, logger="jointdit_trainer"):
        assert resolve_resume("latest", out) == out / "checkpoint-6"
    assert "checkpoint-6 has no checksums.json (written by a trainer version without checksums): resuming without verifying it" in caplog.text
    state = out / "checkpoint-6" / "training_state.safetensors"
    tensors = load_file(str(state))
    next(v for k, v in tensors.items() if k.startswith("addon."))[0] = float("nan")
    save_file(tensors, str(state))
    assert resolve_resume("latest", out) == out / "checkpoint-3"  # unverifiable and non-finite: the previous one
