"""Rebuild the RGB-D world's small model stack from nothing.

    python -m rgbd_world.recipe [--out DIR] [--work DIR] [--quick] [--stages ...] [--side-by-side]
    python -m rgbd_world.recipe --out rgbd_world/model --replace-shipped-model --side-by-side   # rebuild the shipped model

Stages, in order (each runs as its own command, printed before it runs, so any stage can be re-run
by hand):

1. ``data``      training scenes -> ``<work>/data/train`` (python -m rgbd_world.world.make_dataset)
2. ``text``      CLIP and T5 text encoders with the caption tokenizer, random, seeded -> ``<out>/text``
3. ``ae``        the autoencoder -> ``<work>/ae/ae.safetensors`` (python -m rgbd_world.training.autoencoder)
4. ``decoder``   its decoder fine-tuned alone, the encoder kept -> ``<out>/ae.safetensors``
                 (python -m rgbd_world.training.finetune_decoder)
5. ``cache``     the trainer's latent cache -> ``<work>/cache`` (python -m jointdit_trainer preprocess)
6. ``base``      the text-to-image base -> ``<out>/flux.safetensors`` (python -m rgbd_world.training.base)
7. ``addons``    JointDiT addons with the trainer (python -m jointdit_trainer train, config
                 ``rgbd_world/configs/jointdit_small.toml``): ``uts_asw`` (the recipe as published),
                 ``same_timestep`` (UTS off) and ``asw_off`` (ASW off); same seed and steps
                 -> ``<out>/addons/<variant>.safetensors`` + sidecar
8. ``manifest``  the baseline mean disparity map and ``<out>/model.json``

Everything is seeded; a rerun with the same torch version and thread count gives the same files.
``--device`` (default auto: CUDA when present, else the CPU) picks where the training stages run; each
stage's time is printed when it ends and recorded in ``<out>/model.json`` (``recipe.stages``).
``--quick`` shrinks every stage (a smoke test of the recipe, not a usable model).

Long stages go in segments: the base writes its training state every 50 steps (beside
``<out>/flux.safetensors``), the decoder fine-tune every 100 (beside ``<out>/ae.safetensors``), each addon run every 100 (in ``<work>/addons/<variant>/checkpoints``). After an
interruption, ``--resume`` with the stages still to run (e.g. ``--stages base addons manifest --resume``)
continues each run from its last state instead of starting it over; the result is that of an
uninterrupted run.

Folders: ``--out`` defaults to ``build/rgbd_world/model`` (``build/rgbd_world/quick/model`` with
``--quick``), ``--work`` to ``build/rgbd_world`` (``build/rgbd_world/quick``). The shipped model folder
``rgbd_world/model`` is written only with ``--replace-shipped-model``, and never by ``--quick``. A run of
every stage refuses an ``--out`` holding files the recipe does not write, and clears the recipe's own
files there first, so no file of an earlier run stays mixed in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .cli import int_at_least

STAGES = ("data", "text", "ae", "decoder", "cache", "base", "addons", "manifest")
CONFIG = Path(__file__).resolve().parent / "configs" / "jointdit_small.toml"
SHIPPED_MODEL = Path(__file__).resolve().parent / "model"
# what the stages write into --out (everything else there is someone else's)
OUT_FILES = ("text", "ae.safetensors", "ae.json", "flux.safetensors", "flux.json", "addons", "baseline_mean_disparity.safetensors", "model.json",
             "evaluation.json",  # python -m rgbd_world.evaluation.depth --json; stale once the model is rebuilt
             "flux.checkpoint.safetensors", "ae.checkpoint.safetensors")  # the base's and the decoder's training state while they train
# files in --out the recipe neither writes nor clears: the caption classifier (python -m rgbd_world.evaluation.caption_classifier),
# the ruler every model is measured with, which a rebuild keeps
KEPT_FILES = ("caption_classifier.safetensors", "caption_classifier.json")
VARIANTS = {  # variant: trainer overrides (the ablations of the paper)
    "uts_asw": {"timestep_sampling": "uts", "asw_strength": 1.0},
    "same_timestep": {"timestep_sampling": "same", "asw_strength": 1.0},
    "asw_off": {"timestep_sampling": "uts", "asw_strength": 0.0},
}
FULL = {"scenes": 4000, "ae_steps": 1000, "decoder_steps": 2000, "base_steps": 1200, "addon_steps": 9600, "addon_cooldown_steps": 4800}
QUICK = {"scenes": 16, "ae_steps": 2, "decoder_steps": 2, "base_steps": 2, "addon_steps": 2, "addon_cooldown_steps": 1}
TEXT_DIM = 64  # CLIP pooled width (= Flux vec_in_dim) and T5 width (= Flux context_in_dim)


def _stage_env(threads: int | None = None, device: str = "auto") -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "1"  # the trainer's accelerate otherwise takes CUDA when present
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")]))
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def _log_entry(cmd: list[str], seconds: float) -> dict:
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    shown = ["python"] + [c.replace(root, "") for c in cmd[1:]]  # no machine paths in the manifest
    return {"command": " ".join(shown), "seconds": seconds}


def run(cmd: list[str], log: dict, key: str, device: str = "auto") -> float:
    """Run one stage command (printed first, its time after it) with OMP_WAIT_POLICY=PASSIVE; returns its seconds.

    Raises:
        subprocess.CalledProcessError: the command failed (its output is above).
    """
    print("\n$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, env=_stage_env(device=device))
    log[key] = _log_entry(cmd, round(time.time() - t0, 1))
    print(f"stage {key}: {log[key]['seconds']:.1f}s", flush=True)
    return log[key]["seconds"]


def run_side_by_side(commands: dict[str, list[str]], log: dict, log_dir: Path, device: str = "auto") -> None:
    """Run stage commands at the same time, one thread each, output to ``<log_dir>/<key>.log``.

    On a 2-core CPU the three addon runs side by side make about 4.8 steps/s in all, one run with both
    cores about 3.5. The shipped addons were trained this way.

    Raises:
        subprocess.CalledProcessError: a command failed (the first failing one; see its log file).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    started = {}
    for key, cmd in commands.items():
        path = log_dir / (key.replace("/", "_") + ".log")
        print(f"\n$ {' '.join(cmd)}\n  (one thread, output in {path})", flush=True)
        with path.open("w") as output:  # the child keeps its own copy of the file descriptor
            started[key] = (subprocess.Popen(cmd, env=_stage_env(threads=1, device=device), stdout=output, stderr=subprocess.STDOUT), time.time())
    failed = None
    while started:
        time.sleep(0.2)
        for key, (proc, t0) in list(started.items()):
            if proc.poll() is None:
                continue
            del started[key]
            log[key] = _log_entry(commands[key], round(time.time() - t0, 1))
            print(f"stage {key}: {log[key]['seconds']:.1f}s", flush=True)
            if proc.returncode != 0 and failed is None:
                failed = subprocess.CalledProcessError(proc.returncode, commands[key])
    if failed is not None:
        raise failed


def trainer_overrides(out: Path, work: Path, sizes: dict) -> list[str]:
    """``--set`` overrides that point the committed trainer config at this run's folders."""
    values = {
        "flux_path": out / "flux.safetensors",
        "ae_path": out / "ae.safetensors",
        "clip_l": out / "text" / "clip",
        "t5xxl": out / "text" / "t5",
        "dataset_dir": work / "data" / "train",
        "cache_dir": work / "cache",
        "max_train_steps": sizes["addon_steps"],
        "lr_decay_steps": sizes["addon_cooldown_steps"],
    }
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def mean_training_disparity(dataset_dir: Path) -> "np.ndarray":  # noqa: F821
    """Mean of the stored normalised disparity maps (depth/*.npy) of a dataset folder: (H, W) float32."""
    import numpy as np

    files = sorted((dataset_dir / "depth").glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"no depth maps in {dataset_dir / 'depth'}")
    return np.mean([np.load(f) for f in files], axis=0).astype(np.float32)


def thin_train_log(src: Path, dst: Path, every: int = 10) -> None:
    """Write the trainer's per-step log (JSON lines) as one line per ``every`` steps, to ship it small:
    ``loss``, ``loss_rgb`` and ``loss_depth`` are the window's means; ``step``, ``epoch``, ``lr`` and
    ``time`` are those of the window's last step."""
    records = [json.loads(line) for line in Path(src).read_text().splitlines() if line.strip()]
    lines = []
    for i in range(0, len(records), every):
        window = records[i : i + every]
        row = dict(window[-1])
        for key in ("loss", "loss_rgb", "loss_depth"):
            row[key] = sum(r[key] for r in window) / len(window)
        lines.append(json.dumps(row) + "\n")
    Path(dst).write_text("".join(lines))


def write_manifest(out: Path, work: Path, sizes: dict, log: dict, variants: dict) -> Path:
    """Write the baseline map and model.json (files, variants, sampling settings, recipe log)."""
    from safetensors.numpy import save_file

    save_file({"mean_disparity": mean_training_disparity(work / "data" / "train")}, str(out / "baseline_mean_disparity.safetensors"))
    ae_info = json.loads((out / "ae.json").read_text())
    previous = json.loads((out / "model.json").read_text()) if (out / "model.json").is_file() else {}
    manifest = {
        "flux": "flux.safetensors",
        "ae": "ae.safetensors",
        "text": "text",
        "t5_max_length": 32,
        "resolution": ae_info["config"]["resolution"],
        "guidance": 1.0,
        "sampling_steps": 20,
        "default_addon": "uts_asw",
        "addons": {
            name: {
                "file": f"addons/{name}.safetensors",
                "timestep_sampling": ov["timestep_sampling"],
                "asw_strength": ov["asw_strength"],
                "steps": sizes["addon_steps"],
                "lr_decay_steps": sizes["addon_cooldown_steps"],
                "config": "rgbd_world/configs/jointdit_small.toml",
            }
            for name, ov in variants.items()
        },
        "baseline": "baseline_mean_disparity.safetensors",
        "recipe": {"sizes": sizes, "stages": {**previous.get("recipe", {}).get("stages", {}), **log}},
    }
    (out / "model.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out / "model.json"


def recipe(out: str | Path, work: str | Path, quick: bool = False, stages=STAGES, seed: int = 0, side_by_side: bool = False, resume: bool = False,
           device: str = "auto") -> dict:
    """Run the stages; returns {"sizes", "log"} (commands and their seconds).

    ``device``: where the training stages run: "auto" (CUDA when present, else the CPU), "cpu", "cuda", ...
    (the autoencoder and the base get ``--device``, the latent cache ``preprocess_device``; the addon runs
    take accelerate's device, CUDA when present, and the CPU with "cpu").

    ``side_by_side`` trains the three addon variants at the same time, one thread each
    (:func:`run_side_by_side`), instead of one after the other. ``resume`` continues the base and the
    addon runs from their last written training state (where there is one) instead of starting them over.
    """
    out, work = Path(out), Path(work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    sizes = dict(QUICK if quick else FULL)
    py = [sys.executable, "-m"]
    log: dict = {}
    tset = trainer_overrides(out, work, sizes)
    on_device = [] if device == "auto" else ["--device", device]
    from .training.base import checkpoint_path  # imports torch: not at the top, so --help stays quick
    if "data" in stages:
        shutil.rmtree(work / "data" / "train", ignore_errors=True)
        run(py + ["rgbd_world.world.make_dataset", "--out", str(work / "data" / "train"), "--split", "train", "--count", str(sizes["scenes"]), "--size", "64"], log, "data")
    if "text" in stages:
        shutil.rmtree(out / "text", ignore_errors=True)
        run(py + ["rgbd_world.training.text", "--out", str(out / "text"), "--clip-dim", str(TEXT_DIM), "--t5-dim", str(TEXT_DIM), "--seed", str(seed)], log, "text")
    if "ae" in stages:
        run(py + ["rgbd_world.training.autoencoder", "--data", str(work / "data" / "train"), "--out", str(work / "ae" / "ae.safetensors"), "--steps", str(sizes["ae_steps"]), "--seed", str(seed)] + on_device, log, "ae", device)
    if "decoder" in stages:
        cmd = ["rgbd_world.training.finetune_decoder", "--data", str(work / "data" / "train"), "--ae", str(work / "ae" / "ae.safetensors"), "--out", str(out / "ae.safetensors"),
               "--steps", str(sizes["decoder_steps"]), "--seed", str(seed), "--checkpoint-every", "100"]
        cmd += (["--resume"] if resume and checkpoint_path(out / "ae.safetensors").is_file() else []) + on_device
        run(py + cmd, log, "decoder", device)
    if "cache" in stages:
        shutil.rmtree(work / "cache", ignore_errors=True)
        run(py + ["jointdit_trainer", "preprocess", "--config", str(CONFIG)] + tset + ([] if device == "auto" else ["--set", f"preprocess_device={device}"]), log, "cache", device)
    if "base" in stages:
        cmd = ["rgbd_world.training.base", "--cache", str(work / "cache"), "--out", str(out / "flux.safetensors"), "--steps", str(sizes["base_steps"]), "--seed", str(seed)]
        cmd += ["--checkpoint-every", "50"] + (["--resume"] if resume and checkpoint_path(out / "flux.safetensors").is_file() else []) + on_device
        run(py + cmd, log, "base", device)
    if "addons" in stages:
        (out / "addons").mkdir(exist_ok=True)
        commands = {}
        for name, ov in VARIANTS.items():
            if not resume:
                shutil.rmtree(work / "addons" / name, ignore_errors=True)
            extra = ["--set", f"output_dir={work / 'addons' / name}"] + [a for k, v in ov.items() for a in ("--set", f"{k}={json.dumps(v)}")]
            extra += ["--set", "save_every_n_steps=100", "--set", "keep_last_n_checkpoints=2"] + (["--set", "resume_from=latest"] if resume else [])
            commands[f"addons/{name}"] = py + ["jointdit_trainer", "train", "--config", str(CONFIG)] + tset + extra
        if side_by_side:
            run_side_by_side(commands, log, work / "logs", device)
        else:
            for key, cmd in commands.items():
                run(cmd, log, key, device)
        for name in VARIANTS:
            run_dir = work / "addons" / name
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(run_dir / f"jointdit_addons{suffix}", out / "addons" / f"{name}{suffix}")
            thin_train_log(run_dir / "logs" / "train_log.jsonl", out / "addons" / f"{name}_train_log.jsonl")
    if "manifest" in stages:
        write_manifest(out, work, sizes, log, VARIANTS)
    return {"sizes": sizes, "log": log}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rgbd_world.recipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="model folder to write (default build/rgbd_world/model, build/rgbd_world/quick/model with --quick)")
    p.add_argument("--work", default=None, help="dataset, cache and training runs (default build/rgbd_world, build/rgbd_world/quick with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a usable model (never written into rgbd_world/model)")
    p.add_argument("--replace-shipped-model", action="store_true", help="allow --out rgbd_world/model: replace the shipped model (full runs only)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="run only these stages (in the fixed order)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--side-by-side", action="store_true", help="train the three addon variants at once, one thread each (faster on a multi-core CPU)")
    p.add_argument("--resume", action="store_true", help="continue the base and addon runs from their last training state (after an interruption)")
    p.add_argument("--device", default="auto", help="where the training stages run: auto (CUDA when present, else the CPU), cpu, cuda, ...")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options with the folders resolved; bad combinations exit through ``parser.error``
    (usage + message, status 2): a smoke run or an unflagged run into the shipped model, an ``--out`` or
    ``--work`` that is a file, an ``--out`` holding files the recipe does not write."""
    p = build_parser()
    a = p.parse_args(argv)
    build = Path("build/rgbd_world") / ("quick" if a.quick else "")
    a.out = Path(a.out) if a.out else build / "model"
    a.work = Path(a.work) if a.work else build
    if a.out.resolve() == SHIPPED_MODEL.resolve():
        if a.quick:
            p.error(f"--quick is a smoke test and never writes into the shipped model folder {SHIPPED_MODEL}; "
                    "leave --out unset (build/rgbd_world/quick/model) or name another folder")
        if not a.replace_shipped_model:
            p.error(f"--out {a.out} would replace the shipped model; add --replace-shipped-model to do that on purpose")
    for name in ("out", "work"):
        if getattr(a, name).exists() and not getattr(a, name).is_dir():
            p.error(f"--{name} {getattr(a, name)} is a file, not a folder")
    if set(a.stages) == set(STAGES) and a.out.is_dir():
        foreign = sorted(x.name for x in a.out.iterdir() if x.name not in OUT_FILES + KEPT_FILES)
        if foreign:
            p.error(f"--out {a.out} holds files the recipe does not write ({', '.join(foreign[:5])}"
                    f"{', ...' if len(foreign) > 5 else ''}); choose an empty or new folder, or remove them")
    return a


def clear_outputs(out: Path) -> list[str]:
    """Remove what an earlier run of the recipe wrote into ``out`` (:data:`OUT_FILES`); returns the names removed."""
    removed = []
    for name in OUT_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def main(argv=None):
    a = parse_args(argv)
    if set(a.stages) == set(STAGES) and not a.resume:
        removed = clear_outputs(a.out)
        if removed:
            print(f"cleared the files of an earlier run from {a.out}: {', '.join(removed)}")
    print(f"writing the model to {a.out}, work files to {a.work}" + (" (--quick: a smoke test, not a usable model)" if a.quick else ""))
    t0 = time.time()
    result = recipe(a.out, a.work, a.quick, a.stages, a.seed, a.side_by_side, a.resume, a.device)
    print(f"\nrecipe done in {time.time() - t0:.0f}s:")
    for key, item in result["log"].items():
        print(f"  {item['seconds']:>7.1f}s  {key}: {item['command']}")


if __name__ == "__main__":
    main()
