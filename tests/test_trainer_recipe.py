"""The RGB-D world recipe's command line as a newcomer meets it: a smoke run never touches
the shipped model, bad options are usage errors, old files are cleared or refused."""

import subprocess
import sys
from pathlib import Path

import pytest

from rgbd_world import recipe

REPO = Path(__file__).resolve().parent.parent


def _usage_error(capsys, argv, module=recipe) -> str:
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_quick_writes_under_build_never_into_the_shipped_model(capsys):
    a = recipe.parse_args(["--quick"])
    assert (a.out, a.work) == (Path("build/rgbd_world/quick/model"), Path("build/rgbd_world/quick"))
    assert recipe.parse_args([]).out == Path("build/rgbd_world/model")
    err = _usage_error(capsys, ["--quick", "--out", str(recipe.SHIPPED_MODEL), "--replace-shipped-model"])
    assert "--quick is a smoke test and never writes into the shipped model folder" in err
    err = _usage_error(capsys, ["--out", str(recipe.SHIPPED_MODEL)])
    assert "would replace the shipped model; add --replace-shipped-model" in err
    assert recipe.parse_args(["--out", str(recipe.SHIPPED_MODEL), "--replace-shipped-model"]).out == recipe.SHIPPED_MODEL


def test_bad_options_are_usage_errors(capsys, tmp_path):
    assert "argument --seed: must be at least 0, got -1" in _usage_error(capsys, ["--seed", "-1"])
    assert "argument --seed: 'x' is not an integer" in _usage_error(capsys, ["--seed", "x"])
    assert "invalid choice: 'adons'" in _usage_error(capsys, ["--stages", "adons"])
    assert "expected at least one argument" in _usage_error(capsys, ["--stages"])
    (tmp_path / "file").write_text("x")
    assert f"--out {tmp_path / 'file'} is a file" in _usage_error(capsys, ["--out", str(tmp_path / "file")])


def test_old_files_are_cleared_and_foreign_files_refused(capsys, tmp_path):
    out = tmp_path / "model"
    (out / "addons").mkdir(parents=True)
    (out / "addons" / "old_variant.safetensors").write_text("x")
    (out / "evaluation.json").write_text("{}")  # describes the model being replaced
    assert recipe.clear_outputs(out) == ["addons", "evaluation.json"] and not list(out.iterdir())
    (out / "notes.txt").write_text("mine")
    err = _usage_error(capsys, ["--quick", "--out", str(out), "--work", str(tmp_path / "work")])
    assert f"--out {out} holds files the recipe does not write (notes.txt)" in err
    assert (out / "notes.txt").read_text() == "mine" and not (tmp_path / "work").exists()
    recipe.parse_args(["--quick", "--out", str(out), "--stages", "manifest"])  # one stage: the folder is kept as is


def test_make_dataset_count_zero_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "rgbd_world.world.make_dataset", "--out", "unused", "--count", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "count=0 is outside it" in done.stderr


def _fake_addon_run(cmd: list[str]) -> None:
    """What a finished addon training writes into its output_dir (for a stubbed recipe runner)."""
    run_dir = Path(next(a.split("=", 1)[1] for a in cmd if a.startswith("output_dir=")))
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        (run_dir / f"jointdit_addons{suffix}").write_text("{}")
    (run_dir / "logs" / "train_log.jsonl").write_text('{"step": 1, "loss": 1, "loss_rgb": 1, "loss_depth": 1}\n')


def test_resume_continues_the_base_and_the_addon_runs_instead_of_restarting_them(tmp_path, monkeypatch):
    """Every run writes its training state as it goes; --resume passes the base --resume (when its state is
    there) and the trainer resume_from=latest, and keeps the addon run folders an interrupted run left."""
    from rgbd_world.training.base import checkpoint_path

    out, work = tmp_path / "model", tmp_path / "work"
    commands = []

    def fake_run(cmd, log, key, device="auto"):
        commands.append(cmd)
        if "train" in cmd and "jointdit_trainer" in cmd:
            _fake_addon_run(cmd)
        return 0.0

    monkeypatch.setattr(recipe, "run", fake_run)
    out.mkdir()
    left_over = work / "addons" / "uts_asw" / "checkpoints" / "step_00000100"
    left_over.mkdir(parents=True)

    recipe.recipe(out, work, quick=True, stages=("decoder", "base", "addons"))
    decoder, base, *addons = commands
    assert "--checkpoint-every" in base and "--resume" not in base  # nothing to resume from yet
    assert "--checkpoint-every" in decoder and "--resume" not in decoder
    # the decoder fine-tunes the ae stage's autoencoder into the model folder (rerunning it starts from the same file)
    assert decoder[decoder.index("--ae") + 1] == str(work / "ae" / "ae.safetensors") and decoder[decoder.index("--out") + 1] == str(out / "ae.safetensors")
    assert all("save_every_n_steps=100" in c and "resume_from=latest" not in c for c in addons)
    assert not left_over.exists()  # a fresh run starts its folders over

    left_over.mkdir(parents=True)
    checkpoint_path(out / "flux.safetensors").write_text("state")
    checkpoint_path(out / "ae.safetensors").write_text("state")
    commands.clear()
    recipe.recipe(out, work, quick=True, stages=("decoder", "base", "addons"), resume=True)
    decoder, base, *addons = commands
    assert "--resume" in base and "--resume" in decoder and len(addons) == 3
    assert all("resume_from=latest" in c for c in addons) and left_over.is_dir()
    assert {"flux.checkpoint.safetensors", "ae.checkpoint.safetensors"} <= set(recipe.OUT_FILES)  # not refused as foreign, cleared by a fresh full run


def test_device_reaches_every_training_stage(tmp_path, monkeypatch):
    """--device cpu: the autoencoder and the base get --device, the cache preprocess_device, and the addon runs
    an environment that keeps accelerate on the CPU; the default (auto) adds nothing to the commands."""
    seen = {}

    def fake_run(cmd, log, key, device="auto"):
        seen[key] = (cmd, recipe._stage_env(device=device))
        if key.startswith("addons/"):
            _fake_addon_run(cmd)
        return 0.0

    monkeypatch.setattr(recipe, "run", fake_run)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    for device in ("cpu", "auto"):
        seen.clear()
        recipe.recipe(tmp_path / device / "model", tmp_path / device / "work", quick=True, stages=("ae", "decoder", "cache", "base", "addons"), device=device)
        assert set(seen) == {"ae", "decoder", "cache", "base", "addons/uts_asw", "addons/same_timestep", "addons/asw_off"}
        on_cpu = device == "cpu"
        assert all((cmd[-2:] == ["--device", "cpu"]) == on_cpu for key, (cmd, _) in seen.items() if key in ("ae", "decoder", "base"))
        assert ("preprocess_device=cpu" in seen["cache"][0]) == on_cpu
        assert all((env.get("ACCELERATE_USE_CPU") == "1") == on_cpu for key, (_, env) in seen.items() if key.startswith("addons/"))
