"""Trainer pieces without a training run: config, the loss step, atomic writes, optimizer state files, CLI errors."""

import json
import os

import pytest
import torch

from jointdit_core.latents import pack, unpack
from jointdit_trainer.__main__ import main
from jointdit_core.files import is_tmp, save_json_atomic, save_safetensors_atomic
from jointdit_trainer import manifest
from jointdit_trainer.checkpointing import list_checkpoints, optimizer_from_flat, optimizer_to_flat, prune_checkpoints, resolve_resume
from jointdit_trainer.config import TrainConfig, load_config
from jointdit_trainer.train import flow_matching_loss


def test_defaults_are_the_official_recipe():
    c = TrainConfig()
    assert (c.learning_rate, c.lr_warmup_steps, c.train_batch_size, c.resolution) == (1e-5, 0, 4, 512)
    assert (c.mixed_precision, c.gradient_checkpointing, c.guidance_scale, c.caption_dropout) == ("bf16", True, 1.0, 0.1)
    assert (c.max_train_epochs, c.max_grad_norm, c.seed, c.t5_max_length) == (8, 0.0, 42, 512)
    assert (c.timestep_sampling, c.uts_normal_shift, c.uts_small_shift, c.asw_strength) == ("uts", 3.1582, 0.25, 1.0)
    assert c.depth_transform == "none" and c.lora_ranks == {}


def test_example_config_is_the_official_recipe():
    from pathlib import Path

    example = load_config(Path(__file__).resolve().parent.parent / "jointdit_trainer" / "example_config.toml")
    default = TrainConfig()
    for key in ("learning_rate", "lr_warmup_steps", "train_batch_size", "max_train_epochs", "mixed_precision", "resolution",
                "gradient_checkpointing", "guidance_scale", "caption_dropout", "timestep_sampling", "asw_strength", "seed"):
        assert getattr(example, key) == getattr(default, key), key


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_config_files_and_overrides(tmp_path, suffix):
    path = tmp_path / f"cfg{suffix}"
    text = {
        ".toml": 'learning_rate = 2e-5\ndepth_transform = "inverse"\n[lora_ranks]\nblocks = 16\n',
        ".json": json.dumps({"learning_rate": 2e-5, "depth_transform": "inverse", "lora_ranks": {"blocks": 16}}),
        ".yaml": "learning_rate: 2e-5\ndepth_transform: inverse\nlora_ranks:\n  blocks: 16\n",  # YAML: a string
    }[suffix]
    path.write_text(text)
    c = load_config(path, ["max_train_steps=100", "lora_ranks.txt_in=32", "sample_prompts=[\"a\", \"b\"]", "output_dir=runs/x"])
    assert (c.learning_rate, c.depth_transform, c.max_train_steps, c.output_dir) == (2e-5, "inverse", 100, "runs/x")
    assert c.lora_ranks == {"blocks": 16, "txt_in": 32}
    assert c.sample_prompts == ["a", "b"]


def test_config_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'learning_rat'.*learning_rate"):
        load_config(overrides=["learning_rat=1"])
    with pytest.raises(ValueError, match="depth_transform must be one of"):
        load_config(overrides=["depth_transform=inverted"])
    with pytest.raises(ValueError, match="unknown lora_ranks keys"):
        load_config(overrides=["lora_ranks.block=4"])
    with pytest.raises(ValueError, match="learning_rate must be a number, got 'fast'"):
        load_config(overrides=["learning_rate=fast"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(overrides=["seed"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    assert main(["train", "--set", "timestep_sampling=balanced"]) == 2


def test_first_mistakes_get_one_line_errors(tmp_path, capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train needs a config file: add --config FILE" in err
    missing = tmp_path / "no_such_folder"
    assert main(["preprocess", "--set", f"dataset_dir={missing}", "--set", "ae_path=ae.safetensors"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"preprocess stopped: dataset folder {missing} does not exist; set dataset_dir" in err
    assert "Traceback" not in err


def test_example_config_paths_exist():
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    text = (repo / "jointdit_trainer" / "example_config.toml").read_text()
    named = {w.strip("(),") for w in text.split() if "/" in w and w.strip("(),").endswith((".py", ".toml", ".md"))}
    assert named and all((repo / n).is_file() for n in named), named


class RecordingModel:
    """Stands in for JointDiT: records its inputs and returns ``velocity(img, t)``."""

    def __init__(self, velocity):
        self.velocity, self.calls = velocity, []

    def __call__(self, img, img_ids, txt, txt_ids, t, y, guidance, asw_strength):
        self.calls.append(dict(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, t=t, y=y, guidance=guidance, asw=asw_strength))
        return self.velocity(img, t)


def _batch(pairs=3):
    g = torch.Generator().manual_seed(0)
    return {
        "image_latent": torch.randn(pairs, 16, 4, 6, generator=g),
        "depth_latent": torch.randn(pairs, 16, 4, 6, generator=g),
        "t5": torch.randn(pairs, 5, 8, generator=g),
        "clip_pooled": torch.randn(pairs, 7, generator=g),
    }, {"t5": torch.zeros(5, 8), "clip_pooled": torch.zeros(7)}


def test_loss_step_noises_both_rows_and_targets_noise_minus_x0():
    batch, empty = _batch()
    x0 = torch.cat([batch["image_latent"], batch["depth_latent"]])
    cfg = TrainConfig(caption_dropout=0.0, asw_strength=0.25)
    # the true velocity of x_t = (1 - t) x0 + t noise is noise - x0 = (x_t - x0) / t: the loss must vanish
    exact = RecordingModel(lambda img, t: pack((unpack(img, 4, 6) - x0) / t[:, None, None, None]))
    loss, loss_rgb, loss_depth = flow_matching_loss(exact, batch, empty, cfg, torch.Generator().manual_seed(1), "cpu", True)
    assert loss.item() < 1e-8 and loss_rgb.item() < 1e-8 and loss_depth.item() < 1e-8
    call = exact.calls[0]
    assert call["img"].shape == (6, 6, 64) and call["img_ids"].shape == (6, 6, 3)
    assert torch.equal(call["txt"], torch.cat([batch["t5"], batch["t5"]])) and not call["txt_ids"].any()
    assert torch.equal(call["y"], torch.cat([batch["clip_pooled"], batch["clip_pooled"]]))
    assert torch.equal(call["guidance"], torch.ones(6)) and call["asw"] == 0.25
    # a model predicting zeros pays the mean of (noise - x0)^2 over both rows
    zero = RecordingModel(lambda img, t: torch.zeros_like(img))
    loss, loss_rgb, loss_depth = flow_matching_loss(zero, batch, empty, cfg, torch.Generator().manual_seed(1), "cpu", True)
    t = zero.calls[0]["t"][:, None, None, None]
    target = (unpack(zero.calls[0]["img"], 4, 6) - x0) / t
    assert loss.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-5)
    assert loss_rgb.item() == pytest.approx(target[:3].pow(2).mean().item(), rel=1e-5)


def test_loss_step_caption_dropout_same_timestep_and_no_guidance():
    batch, empty = _batch(pairs=64)
    model = RecordingModel(lambda img, t: torch.zeros_like(img))
    cfg = TrainConfig(caption_dropout=1.0, timestep_sampling="same")
    flow_matching_loss(model, batch, empty, cfg, torch.Generator().manual_seed(0), "cpu", guidance_embed=False)
    call = model.calls[0]
    assert not call["txt"].any() and not call["y"].any()  # every caption replaced by the empty prompt
    assert torch.equal(call["t"][:64], call["t"][64:]) and call["guidance"] is None
    cfg = TrainConfig(caption_dropout=0.5)
    flow_matching_loss(model, batch, empty, cfg, torch.Generator().manual_seed(0), "cpu", True)
    call = model.calls[1]
    dropped = (call["y"][:64] == 0).all(dim=1)
    assert 16 < dropped.sum() < 48
    assert torch.equal(call["y"][:64], call["y"][64:])  # both rows of a pair share the condition
    assert not torch.equal(call["t"][:64], call["t"][64:])  # UTS: rows differ in about half of the pairs


def test_atomic_writes_leave_old_file_on_failure(tmp_path):
    path = tmp_path / "a.safetensors"
    save_safetensors_atomic({"x": torch.ones(2)}, path)
    with pytest.raises(Exception):
        save_safetensors_atomic({"x": "not a tensor"}, path)
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path))["x"], torch.ones(2))
    save_json_atomic({"a": 1}, tmp_path / "a.json")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.safetensors"]
    assert is_tmp(tmp_path / "a.safetensors.tmp-123") and is_tmp(tmp_path / ".a.safetensors.x1y.tmp")
    assert not is_tmp(path)


def test_optimizer_state_roundtrip_through_safetensors_and_json(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers.optimization import Adafactor

    def make():
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(5))]
        return params, Adafactor(params, lr=1e-2, scale_parameter=False, relative_step=False, warmup_init=False)

    def step(params, opt, seed):
        torch.manual_seed(seed)
        loss = sum((p * torch.randn_like(p)).sum() for p in params)
        loss.backward()
        opt.step()
        opt.zero_grad()

    p1, o1 = make()
    for s in range(3):
        step(p1, o1, s)
    tensors, meta = optimizer_to_flat(o1.state_dict())
    save_file(tensors, str(tmp_path / "o.safetensors"))
    (tmp_path / "o.json").write_text(json.dumps(meta))
    p2, o2 = make()
    with torch.no_grad():
        for a, b in zip(p2, p1):
            a.copy_(b)
    o2.load_state_dict(optimizer_from_flat(load_file(str(tmp_path / "o.safetensors")), json.loads((tmp_path / "o.json").read_text())))
    step(p1, o1, 7)
    step(p2, o2, 7)
    for a, b in zip(p1, p2):
        assert torch.equal(a, b)


def test_checkpoint_listing_ignores_incomplete_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("JOINTDIT_TRAINER_KEY_FILE", str(tmp_path / "key"))
    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "training_state.json").write_text("{}")
        manifest.write(tmp_path / f"checkpoint-{step}")
    (tmp_path / "checkpoint-20.tmp-write").mkdir()  # an interrupted write
    (tmp_path / "checkpoint-25").mkdir()  # no state file
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 10, 15]
    assert resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-15"
    assert resolve_resume("latest", tmp_path / "nothing") is None and resolve_resume(None, tmp_path) is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "checkpoint-25"), tmp_path)
    prune_checkpoints(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 15]


def test_checksum_manifest_names_missing_added_and_changed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("JOINTDIT_TRAINER_KEY_FILE", str(tmp_path / "key"))
    folder = tmp_path / "checkpoint-1"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    (folder / "sub" / "b.bin").write_bytes(b"12345678")
    manifest.write(folder)
    manifest.verify(folder, signed=True)
    (folder / "sub" / "b.bin").write_bytes(b"12345679")
    with pytest.raises(manifest.DamagedCheckpoint, match="checkpoint-1/sub/b.bin does not match its sha256"):
        manifest.verify(folder)
    (folder / "sub" / "b.bin").unlink()
    with pytest.raises(manifest.DamagedCheckpoint, match="checkpoint-1/sub/b.bin is missing"):
        manifest.verify(folder)
    manifest.write(folder)
    (folder / "sub" / "extra.pkl").write_bytes(b"x")
    with pytest.raises(manifest.DamagedCheckpoint, match="checkpoint-1/sub/extra.pkl is not in checksums.json"):
        manifest.verify(folder)
    (folder / "sub" / "extra.pkl").unlink()
    monkeypatch.setenv("JOINTDIT_TRAINER_KEY_FILE", str(tmp_path / "other_key"))
    manifest.verify(folder)  # integrity holds with any key
    with pytest.raises(manifest.DamagedCheckpoint, match="not signed with this machine's trainer key"):
        manifest.verify(folder, signed=True)
    assert oct((tmp_path / "key").stat().st_mode & 0o777) == "0o600"
