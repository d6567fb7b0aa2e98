"""The RGB-D world's small model stack: autoencoder scale folding, the recipe's stages in miniature,
the shipped model (loads, estimates depth better than the trivial baseline), the demo."""

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jointdit_core.autoencoder import AutoEncoder
from jointdit_core.config import AutoEncoderConfig, FluxConfig
from rgbd_world import stack as S

TINY_AE = AutoEncoderConfig(resolution=32, ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4)
SHIPPED = S.DEFAULT_MODEL_DIR


def test_folding_the_latent_scale_keeps_reconstructions_and_gives_unit_std():
    from rgbd_world.training.autoencoder import fold_latent_scale

    torch.manual_seed(0)
    ae = AutoEncoder(TINY_AE).eval()
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before_latent, before = ae.encode(x), ae.decode(ae.encode(x))
        stats = fold_latent_scale(ae, x)
        after_latent, after = ae.encode(x), ae.decode(ae.encode(x))
    assert torch.allclose(before, after, atol=1e-4)  # an exact rescaling inside the network
    std = after_latent.transpose(0, 1).reshape(4, -1).std(dim=1)
    torch.testing.assert_close(std, torch.ones(4), atol=1e-4, rtol=0)
    assert not torch.allclose(before_latent, after_latent, atol=1e-2)  # the latents did change scale
    np.testing.assert_allclose(stats["latent_std"], 1.0, atol=1e-4)


def test_colormap_is_viridis_from_far_to_near():
    from rgbd_world.demo import colormap

    c = colormap(np.array([[0.0, 0.5, 1.0, -3.0, 7.0]]))
    assert c.dtype == np.uint8 and c.shape == (1, 5, 3)
    assert c[0, 0].tolist() == [68, 1, 84] and c[0, 2].tolist() == [253, 231, 37]
    assert c[0, 1].tolist() == [38, 130, 142]  # viridis at 0.5 (anchor 4 of 8)
    assert c[0, 3].tolist() == c[0, 0].tolist() and c[0, 4].tolist() == c[0, 2].tolist()  # clamped


def test_recipe_stages_in_miniature(tmp_path):
    """Dataset -> text encoders -> autoencoder -> trainer cache -> base -> trainer addons -> manifest ->
    load -> depth estimation / evaluation, each stage as the recipe runs it, at toy sizes."""
    from rgbd_world.world.dataset import write_dataset
    from rgbd_world.evaluation.depth import evaluate
    from rgbd_world.recipe import CONFIG, VARIANTS, trainer_overrides, write_manifest
    from rgbd_world.training.text import build_text_encoders
    from rgbd_world.training.autoencoder import train_autoencoder
    from rgbd_world.training.base import train_base
    from jointdit_trainer.config import load_config
    from jointdit_trainer.preprocess import preprocess
    from jointdit_trainer.train import train

    out, work = tmp_path / "model", tmp_path / "work"
    write_dataset(work / "data" / "train", "train", count=4, size=32, progress=False)
    build_text_encoders(out / "text", clip_dim=16, t5_dim=16, layers=1)
    train_autoencoder(work / "data" / "train", out / "ae.safetensors", TINY_AE, steps=1, batch=2, log_every=100)
    sizes = {"scenes": 4, "ae_steps": 1, "base_steps": 1, "addon_steps": 1, "addon_cooldown_steps": 1}
    overrides = [o for o in trainer_overrides(out, work, sizes) if o != "--set"]
    small = ["resolution=32", "train_batch_size=2", "lora_ranks.txt_in=4", "lora_ranks.vector_in_in_layer=4", "lora_ranks.vector_in_out_layer=4", "lora_ranks.blocks=4"]
    preprocess(load_config(CONFIG, overrides + small))
    base = FluxConfig(in_channels=16, vec_in_dim=16, context_in_dim=16, hidden_size=64, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=(16, 24, 24))
    train_base(work / "cache", out / "flux.safetensors", base, steps=1, batch=2, log_every=100)
    train(load_config(CONFIG, overrides + small + [f"output_dir={work / 'run'}"]))
    (out / "addons").mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(work / "run" / f"jointdit_addons{suffix}", out / "addons" / f"uts_asw{suffix}")
    write_manifest(out, work, sizes, {}, {"uts_asw": VARIANTS["uts_asw"]})

    manifest = json.loads((out / "model.json").read_text())
    assert manifest["resolution"] == 32 and manifest["addons"]["uts_asw"]["asw_strength"] == 1.0
    baseline = S.load_baseline(out)
    stored = np.mean([np.load(p) for p in sorted((work / "data" / "train" / "depth").glob("*.npy"))], axis=0)
    np.testing.assert_allclose(baseline, stored, atol=1e-6)
    stack = S.load_stack(out)
    assert stack.latent_size == (16, 16) and stack.model.config.hidden_size == 64
    scenes = S.held_out_scenes(2, size=32)
    disparity = S.depth_estimation(stack, np.stack([s.rgb for s in scenes]), steps=1)
    assert disparity.shape == (2, 32, 32) and disparity.dtype == np.float32
    assert 0.0 <= disparity.min() and disparity.max() <= 1.0
    result = evaluate(out, count=2, steps=1)
    assert set(result["rows"]) == {"uts_asw", "baseline", "ae_roundtrip"}
    assert all(np.isfinite(r["abs_rel"]) and 0 <= r["delta1"] <= 1 for r in result["rows"].values())


def test_shipped_model_is_small_and_complete():
    manifest = S.read_manifest(SHIPPED)
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    for name in [manifest["flux"], manifest["ae"], manifest["baseline"]] + [v["file"] for v in manifest["addons"].values()]:
        assert (SHIPPED / name).is_file(), name
    assert set(manifest["addons"]) == {"uts_asw", "same_timestep", "asw_off"}
    assert manifest["addons"]["asw_off"]["asw_strength"] == 0.0


def test_shipped_model_estimates_depth_better_than_the_mean_depth_baseline():
    """Held-out scenes (never trained on): a broken joint path (e.g. addons not loaded or the rgb row not
    attended to) scores at or above the baseline, which predicts one map for every image."""
    from rgbd_world.evaluation.metrics import evaluate_disparity

    stack = S.load_stack(SHIPPED)
    scenes = S.held_out_scenes(8, start=500)
    pred = S.depth_estimation(stack, np.stack([s.rgb for s in scenes]), steps=10)
    baseline = S.load_baseline(SHIPPED)
    ours = np.array([evaluate_disparity(p, s.depth)["abs_rel"] for p, s in zip(pred, scenes)])
    base = np.array([evaluate_disparity(baseline, s.depth)["abs_rel"] for s in scenes])
    assert ours.mean() < 0.75 * base.mean()  # shipped model: 0.58 on these scenes (0.52 on 200 test scenes)
    assert (ours < base).sum() >= 7


def test_depth_estimation_ensembles_the_members_evaluate_ensemble_measures():
    """ensemble=N combines the runs with seeds seed + 1000 k (the members rgbd_world.evaluation.ensemble scores);
    N = 1 is the single run; model.json ``depth_estimation`` sets the stack's steps and ensemble size."""
    from jointdit_core.ensemble import ensemble_disparity

    stack = S.load_stack(SHIPPED)
    rgb = np.stack([s.rgb for s in S.held_out_scenes(2, start=600)])
    members = [S.depth_estimation(stack, rgb, steps=2, seed=5 + 1000 * k) for k in range(2)]
    assert np.array_equal(S.depth_estimation(stack, rgb, steps=2, seed=5, ensemble=1), members[0])
    expected = ensemble_disparity(torch.from_numpy(np.stack(members))).disparity.numpy()
    assert np.array_equal(S.depth_estimation(stack, rgb, steps=2, seed=5, ensemble=2), expected)
    with pytest.raises(ValueError, match="at least 1"):
        S.depth_estimation(stack, rgb, ensemble=0)
    assert S.depth_settings({}) == (20, 1) and S.depth_settings({"depth_estimation": {"steps": 4, "ensemble": 3}}) == (4, 3)
    assert (stack.depth_steps, stack.depth_ensemble) == S.depth_settings(stack.manifest)


def test_demo_writes_every_file_it_lists(tmp_path, capsys):
    import re

    from rgbd_world.demo import closing_lines, main, run_demo

    summary = run_demo(tmp_path, SHIPPED, steps=2, count=2, depth_steps=1, ensemble=2)
    assert summary["depth_estimation_setting"] == {"steps": 1, "ensemble": 2}
    for name in summary["files"]:
        assert (tmp_path / name).is_file(), name
    lines = closing_lines(summary, tmp_path)
    assert lines[-1] == f"open {tmp_path / 'overview.png'}" and len(lines) <= 12
    assert not any("00_input.png" in line for line in lines)  # a summary, not the file list
    # --help lists the tasks in the overview's order, strongest first
    with pytest.raises(SystemExit):
        main(["--help"])
    helped = re.findall(r"^(\d)\. ([^:]+):", capsys.readouterr().out, re.M)
    assert [name.lower() for _, name in helped] == [t.split(":")[0].split(". ", 1)[1].lower() for t in summary["overview"]]
    assert helped[0][1] == "depth estimation" and helped[-1][1] == "joint generation"
    assert len(summary["depth_estimation"]["scenes"]) == 2
    assert summary["depth_estimation"]["mean"]["abs_rel"] >= 0
    assert (tmp_path / "joint_generation" / "00_depth_color.png").is_file()
    text = (tmp_path / "summary.md").read_text()
    assert "Depth estimation on held-out scenes" in text and "a large red sphere" in text
    assert summary["inpainting"]["abs_rel_in_region"] >= 0 and summary["outpainting"]["region_pixels"] == 2 * 16 * 64 and summary["depth_completion"]["share"] == 0.05
    for name in ("inpainting/00_rgb.png", "inpainting/00_depth_color.png", "depth_completion/00_sparse_depth_color.png", "overview.png"):
        assert name in summary["files"]


def test_demo_caption_and_own_addon_file(tmp_path):
    """--caption replaces the built-in captions; --addon runs an addon file from outside the model folder."""
    import shutil

    from rgbd_world.demo import run_demo

    addon = tmp_path / "mine" / "my_addons.safetensors"
    addon.parent.mkdir()
    shutil.copy(SHIPPED / "addons" / "same_timestep.safetensors", addon)
    shutil.copy(SHIPPED / "addons" / "same_timestep.json", addon.with_suffix(".json"))
    summary = run_demo(tmp_path / "out", SHIPPED, steps=1, count=1, captions=["two red cubes"], addon=addon)
    assert [e["caption"] for e in summary["joint_generation"]] == ["two red cubes"]
    assert summary["variant"] == "my_addons.safetensors" and summary["asw_strength"] == 1.0


def test_recipe_runs_stage_commands_side_by_side_with_one_thread_each(tmp_path):
    import subprocess
    import sys

    from rgbd_world.recipe import run_side_by_side

    # each command marks that it started, then waits for the other's mark: run one after the other, the
    # first would give up after 30 s and fail
    meet = (
        "import os, sys, time; from pathlib import Path; me, other = sys.argv[1:]; Path(me).touch()\n"
        "deadline = time.time() + 30\n"
        "while not Path(other).exists():\n"
        "    if time.time() > deadline: sys.exit('the other command never started')\n"
        "    time.sleep(0.05)\n"
        "print('threads', os.environ['OMP_NUM_THREADS'])"
    )
    a, b = str(tmp_path / "a.started"), str(tmp_path / "b.started")
    log = {}
    run_side_by_side({"addons/a": [sys.executable, "-c", meet, a, b], "addons/b": [sys.executable, "-c", meet, b, a]}, log, tmp_path)
    assert set(log) == {"addons/a", "addons/b"} and log["addons/a"]["command"].startswith("python -c")
    assert (tmp_path / "addons_a.log").read_text().strip() == "threads 1"
    with pytest.raises(subprocess.CalledProcessError):
        run_side_by_side({"ok": [sys.executable, "-c", "pass"], "bad": [sys.executable, "-c", "raise SystemExit(3)"]}, {}, tmp_path)


def test_shipped_train_logs_are_window_means(tmp_path):
    from rgbd_world.recipe import thin_train_log

    src = tmp_path / "log.jsonl"
    src.write_text("".join(json.dumps({"step": i, "epoch": 0, "loss": float(i), "loss_rgb": 2.0 * i, "loss_depth": 0.0, "lr": 1.0 / i, "time": i}) + "\n" for i in range(1, 26)))
    thin_train_log(src, tmp_path / "thin.jsonl", every=10)
    rows = [json.loads(line) for line in (tmp_path / "thin.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 25]
    assert [r["loss"] for r in rows] == [5.5, 15.5, 23.0] and rows[0]["loss_rgb"] == 11.0
    assert rows[2]["lr"] == 1.0 / 25 and rows[2]["time"] == 25


def _tiny_cache(root: Path, n: int = 6) -> FluxConfig:
    """A latent cache in the trainer's layout (random tensors) and a base config that fits it."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    (root / "samples").mkdir(parents=True)
    stems = [f"train_{i:07d}" for i in range(n)]
    for stem in stems:
        save_file({"image_latent": torch.randn(4, 8, 8, generator=gen), "t5": torch.randn(6, 16, generator=gen), "clip_pooled": torch.randn(16, generator=gen)}, str(root / "samples" / f"{stem}.safetensors"))
    save_file({"t5": torch.zeros(6, 16), "clip_pooled": torch.zeros(16)}, str(root / "empty_prompt.safetensors"))
    (root / "cache.json").write_text(json.dumps({"latent_shape": [4, 8, 8], "t5_shape": [6, 16], "clip_dim": 16, "samples": stems}))
    return FluxConfig(in_channels=16, vec_in_dim=16, context_in_dim=16, hidden_size=64, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=(16, 24, 24))


@contextlib.contextmanager
def _interrupted_after_two_checkpoints(module):
    """``module.save_checkpoint`` raises KeyboardInterrupt right after its first two writes (a run killed
    there); yields the list of the steps it stopped at."""
    save_checkpoint, interrupted = module.save_checkpoint, []

    def stop_after_checkpoint(path, *args):
        save_checkpoint(path, *args)
        if len(interrupted) < 2:
            interrupted.append(args[3]["step"])
            raise KeyboardInterrupt

    module.save_checkpoint = stop_after_checkpoint
    try:
        yield interrupted
    finally:
        module.save_checkpoint = save_checkpoint


def test_train_base_resumed_in_segments_equals_a_straight_run(tmp_path):
    """Stopped after its checkpoint (in the warmup and again in the cosine decay) and resumed twice, the
    base ends bit for bit where a straight run ends: weights, AdamW moments, batches and noise restored."""
    from safetensors.torch import load_file

    from rgbd_world.training.base import checkpoint_path, train_base

    config = _tiny_cache(tmp_path / "cache")
    straight = train_base(tmp_path / "cache", tmp_path / "a" / "flux.safetensors", config, steps=12, batch=3, log_every=2, dtype="fp32")

    seg = tmp_path / "b" / "flux.safetensors"
    import rgbd_world.training.base as TB

    with _interrupted_after_two_checkpoints(TB) as interrupted:
        with pytest.raises(KeyboardInterrupt):
            train_base(tmp_path / "cache", seg, config, steps=12, batch=3, log_every=2, dtype="fp32", checkpoint_every=4)
        with pytest.raises(FileExistsError, match="--resume"):
            train_base(tmp_path / "cache", seg, config, steps=12, batch=3, log_every=2, dtype="fp32", checkpoint_every=4)
        with pytest.raises(ValueError, match="lr: 0.001 there, 0.002 now"):
            train_base(tmp_path / "cache", seg, config, steps=12, batch=3, lr=2e-3, log_every=2, dtype="fp32", checkpoint_every=4, resume=True)
        with pytest.raises(KeyboardInterrupt):
            train_base(tmp_path / "cache", seg, config, steps=12, batch=3, log_every=2, dtype="fp32", checkpoint_every=4, resume=True)
        train_base(tmp_path / "cache", seg, config, steps=12, batch=3, log_every=2, dtype="fp32", checkpoint_every=4, resume=True)
    assert interrupted == [4, 8]
    a, b = load_file(str(straight)), load_file(str(seg))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoint_path(seg).exists()
    history = lambda p: json.loads(p.with_suffix(".json").read_text())["training"]["history"]  # noqa: E731
    assert history(seg) == history(straight) and len(history(seg)) == 6
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_base(tmp_path / "cache", seg, config, steps=12, batch=3, dtype="fp32", resume=True)


def test_decoder_finetune_keeps_the_encoder_and_lowers_the_reconstruction_error(tmp_path):
    """Only the decoder trains: the encoder's tensors (so every latent and cache) are unchanged bit for bit,
    and the round-trip error of the training images falls."""
    from safetensors.torch import load_file

    from rgbd_world.world.dataset import write_dataset
    from rgbd_world.training.finetune_decoder import finetune_decoder
    from rgbd_world.training.autoencoder import train_autoencoder

    write_dataset(tmp_path / "data", "train", count=4, size=32, progress=False)
    source = train_autoencoder(tmp_path / "data", tmp_path / "ae.safetensors", TINY_AE, steps=3, batch=2, log_every=100)
    tuned = finetune_decoder(tmp_path / "data", source, tmp_path / "tuned" / "ae.safetensors", steps=40, batch=4, lr=2e-3, log_every=100)
    a, b = load_file(str(source)), load_file(str(tuned))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
    assert not torch.equal(a["decoder.conv_out.weight"], b["decoder.conv_out.weight"])
    info = json.loads((tmp_path / "tuned" / "ae.json").read_text())
    assert info["config"] == json.loads((tmp_path / "ae.json").read_text())["config"]
    assert info["reconstruction_l1"]["rgb_l1"] < 0.9 * info["decoder_finetune"]["reconstruction_l1_before"]["rgb_l1"]
    with pytest.raises(ValueError, match="trained at 32"):
        write_dataset(tmp_path / "big", "train", count=1, size=64, progress=False)
        finetune_decoder(tmp_path / "big", source, tmp_path / "x.safetensors", steps=1)


def test_decoder_finetune_resumed_in_segments_equals_a_straight_run(tmp_path):
    """Killed after its checkpoints and resumed twice, the decoder fine-tune writes the same autoencoder bit for bit."""
    from safetensors.torch import load_file

    import rgbd_world.training.finetune_decoder as FD
    from rgbd_world.world.dataset import write_dataset
    from rgbd_world.training.autoencoder import train_autoencoder
    from rgbd_world.training.base import checkpoint_path

    write_dataset(tmp_path / "data", "train", count=4, size=32, progress=False)
    source = train_autoencoder(tmp_path / "data", tmp_path / "ae.safetensors", TINY_AE, steps=2, batch=2, log_every=100)
    run = lambda out, **kw: FD.finetune_decoder(tmp_path / "data", source, out, steps=9, batch=2, log_every=2, **kw)  # noqa: E731
    straight = run(tmp_path / "a" / "ae.safetensors")
    seg = tmp_path / "b" / "ae.safetensors"
    with _interrupted_after_two_checkpoints(FD) as interrupted:
        for resume in (False, True):
            with pytest.raises(KeyboardInterrupt):
                run(seg, checkpoint_every=3, resume=resume)
        with pytest.raises(FileExistsError, match="--resume"):
            run(seg, checkpoint_every=3)
        run(seg, checkpoint_every=3, resume=True)
    assert interrupted == [3, 6]
    a, b = load_file(str(straight)), load_file(str(seg))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoint_path(seg).exists()
    history = lambda p: json.loads(p.with_suffix(".json").read_text())["decoder_finetune"]["history"]  # noqa: E731
    assert history(seg) == history(straight) and [h["step"] for h in history(seg)] == [1, 2, 4, 6, 8]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(seg, resume=True)


def test_captioned_tasks_sample_with_the_manifests_cfg(tmp_path):
    """model.json ``cfg`` (absent: 1.0, off) is the default guidance of joint generation and depth-to-image;
    an explicit cfg overrides it, and guidance changes the image."""
    stack = S.load_stack(SHIPPED)
    assert stack.cfg == float(stack.manifest.get("cfg", 1.0))
    caption = ["a large red cube on a checkered floor"]
    plain = S.joint_generation(stack, caption, steps=2, cfg=1.0)[0]
    stack.cfg = 4.0
    assert np.array_equal(S.joint_generation(stack, caption, steps=2)[0], S.joint_generation(stack, caption, steps=2, cfg=4.0)[0])
    assert np.abs(S.joint_generation(stack, caption, steps=2)[0].astype(int) - plain).max() > 10
    disparity = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[:, None], (1, 1, 64))
    d2i_plain = S.depth_to_image(stack, disparity, caption, steps=2, cfg=1.0)
    assert np.abs(S.depth_to_image(stack, disparity, caption, steps=2).astype(int) - d2i_plain).max() > 10
