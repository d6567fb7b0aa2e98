"""Training checkpoints: safetensors + JSON, written atomically, with a checksum manifest.

``<output_dir>/checkpoint-<step>/`` holds:

* ``<output_name>.safetensors`` + ``.json``: the addons in the official layout (bf16) with the sidecar,
  loadable by ``LoadJointDiT`` as they are;
* ``training_state.safetensors``: float32 addon weights (``addon.<key>``) and the optimizer's tensor
  state (``optimizer.<param index>.<name>``);
* ``training_state.json``: step, epoch, the optimizer's param groups and scalar state, the learning-rate
  scheduler state, the config;
* ``rng_rank<r>.safetensors``: RNG states of process r (torch CPU/CUDA, the trainer's generator,
  numpy; Python's ``random`` state in the metadata);
* ``checksums.json``: size and sha256 of every other file, signed (:mod:`jointdit_trainer.manifest`);
  a resume verifies it first and falls back to the newest intact checkpoint.

The folder is written under a temporary name and renamed when complete, so a folder named
``checkpoint-<step>`` is always whole. This is the one checkpoint format; only where the optimizer is
sharded (FSDP or DeepSpeed) is the optimizer/scheduler part written by accelerate's ``save_state`` in
``accelerate_state/`` instead of ``training_state.*`` (a sharded optimizer's state exists only as
shards, which accelerate knows how to write and read back; ``safe_serialization=True`` for the weights,
``torch.save`` for optimizer and scheduler, and torch.distributed.checkpoint's pickled ``.metadata``).
Loading that folder unpickles, so the trainer loads it only when its manifest carries this machine's
signature (:func:`jointdit_trainer.manifest.verify`). Nothing else is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from jointdit_core.files import TMP_MARK, is_tmp, publish_dir, save_json_atomic, save_safetensors_atomic

from . import manifest

logger = logging.getLogger(__name__)

FORMAT = "jointdit-trainer-checkpoint-1"
STATE_FILE = "training_state.safetensors"
STATE_JSON = "training_state.json"
CHECKPOINT_RX = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    """``<output_dir>/checkpoint-<step>``."""
    return Path(output_dir) / f"checkpoint-{step}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (folders ``checkpoint-<step>`` holding ``training_state.json``), by step."""
    out = []
    root = Path(output_dir)
    if not root.is_dir():
        return out
    for path in root.iterdir():
        m = CHECKPOINT_RX.match(path.name)
        if m and path.is_dir() and (path / STATE_JSON).is_file():
            out.append((int(m.group(1)), path))
    return sorted(out)


def remove_stale_tmp(output_dir: str | Path) -> list[Path]:
    """Delete leftovers of interrupted atomic writes directly under ``output_dir``; returns them."""
    removed = []
    root = Path(output_dir)
    if root.is_dir():
        for path in root.iterdir():
            if is_tmp(path):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def checkpoint_problem(folder: Path) -> str | None:
    """None when ``folder`` is an intact checkpoint; otherwise what is wrong with it (naming the file).

    A folder with ``accelerate_state/`` must also carry this machine's signature (loading it unpickles);
    a folder from a trainer before checksums (no ``checksums.json``) is accepted without them when its
    addon weights are finite and it has no ``accelerate_state/``, with a warning.
    """
    sharded = (folder / "accelerate_state").exists()
    try:
        manifest.verify(folder, signed=sharded)
    except manifest.MissingManifest as exc:
        if sharded:
            return f"{exc}; its accelerate_state/ is not loaded without a signed manifest (loading it unpickles)"
        logger.warning("%s: resuming without verifying it", exc)
        try:
            tensors = load_file(str(folder / STATE_FILE))
        except Exception as err:  # noqa: BLE001 - any failure to read is the reason
            return f"{folder.name}/{STATE_FILE} is missing or unreadable ({type(err).__name__})"
        bad = nonfinite_keys(tensors)
        return f"{folder.name}/{STATE_FILE} holds NaN or infinite values ({bad[0]}, ...)" if bad else None
    except manifest.DamagedCheckpoint as exc:
        return str(exc)
    return None


def resolve_resume(resume_from: str | None, output_dir: str | Path) -> Path | None:
    """Checkpoint folder to resume from: None, "latest" or a path; checked with :func:`checkpoint_problem`.

    "latest" is the newest intact checkpoint (None when there is none yet); each damaged newer one is
    logged as a warning naming it and the reason.

    Raises:
        FileNotFoundError: an explicit path that is not a complete checkpoint.
        manifest.DamagedCheckpoint: the explicit checkpoint is damaged, or every checkpoint under
            ``output_dir`` is.
    """
    if not resume_from:
        return None
    if resume_from != "latest":
        path = Path(resume_from)
        if not (path / STATE_JSON).is_file():
            raise FileNotFoundError(f"resume_from={resume_from}: not a complete checkpoint folder ({STATE_JSON} missing)")
        problem = checkpoint_problem(path)
        if problem:
            raise manifest.DamagedCheckpoint(f"cannot resume from {path}: {problem}")
        return path
    found = list_checkpoints(output_dir)
    problems = []
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        problems.append(problem)
        logger.warning("checkpoint %s is damaged, not resuming from it: %s", path, problem)
    if problems:
        raise manifest.DamagedCheckpoint(
            f"no intact checkpoint in {output_dir}: " + "; ".join(problems)
            + ". Move the damaged folders away (or set resume_from to none) to start from step 0"
        )
    return None


def nonfinite_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> None:
    """Keep the newest ``keep`` checkpoints; older ones are renamed to a temporary name, then deleted."""
    if not keep or keep < 1:
        return
    for _, path in list_checkpoints(output_dir)[:-keep]:
        doomed = path.with_name(f"{path.name}{TMP_MARK}del")
        path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)


# ----------------------------------------------------------------------------- optimizer / scheduler


def optimizer_to_flat(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors tensors and a JSON-able rest."""
    tensors, scalars = {}, {}
    for idx, entry in state_dict["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`optimizer_to_flat`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


# ----------------------------------------------------------------------------- RNG


def capture_rng(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """RNG states as tensors (torch CPU, CUDA devices, ``generator``, numpy MT) plus metadata strings."""
    tensors = {"torch_cpu": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["numpy_mt"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py_state = random.getstate()
    meta = {
        "numpy": json.dumps([np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])]),
        "python": json.dumps([py_state[0], list(py_state[1]), py_state[2]]),
    }
    return tensors, meta


def restore_rng(path: Path, generator: torch.Generator) -> None:
    """Restore what :func:`capture_rng` saved in ``path``."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    torch.set_rng_state(tensors["torch_cpu"])
    generator.set_state(tensors["generator"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "numpy" in meta:
        name, pos, has_gauss, cached = json.loads(meta["numpy"])
        np.random.set_state((name, tensors["numpy_mt"].numpy().astype(np.uint32), pos, has_gauss, cached))
    if "python" in meta:
        version, internal, gauss = json.loads(meta["python"])
        random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------- save / load


def write_training_state(
    folder: Path,
    addon_state: dict[str, torch.Tensor],
    optimizer_state: dict | None,
    scheduler_state: dict,
    info: dict,
) -> None:
    """Write ``training_state.safetensors`` (float32 addons + optimizer tensors) and ``training_state.json``.

    Args:
        addon_state: official addon key -> tensor (kept at full precision for exact resume).
        optimizer_state: ``optimizer.state_dict()``, or None when accelerate saved it (FSDP/DeepSpeed).
        info: step, epoch, config, ... (JSON-able); stored with the optimizer's JSON part.
    """
    tensors = {f"addon.{k}": v.detach().float() for k, v in addon_state.items()}
    data = dict(info, format=FORMAT, scheduler=scheduler_state)
    if optimizer_state is not None:
        opt_tensors, opt_meta = optimizer_to_flat(optimizer_state)
        tensors.update(opt_tensors)
        data["optimizer"] = opt_meta
    save_safetensors_atomic(tensors, folder / STATE_FILE, metadata={"format": FORMAT})
    save_json_atomic(data, folder / STATE_JSON)


def read_training_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """Inverse of :func:`write_training_state`: (addon_state, optimizer_state or None, info).

    Raises:
        ValueError: a folder of another format.
    """
    with open(folder / STATE_JSON, encoding="utf-8") as f:
        info = json.load(f)
    if info.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a checkpoint of this trainer (format {info.get('format')!r})")
    tensors = load_file(str(folder / STATE_FILE))
    addon_state = {k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")}
    optimizer_state = optimizer_from_flat(tensors, info["optimizer"]) if "optimizer" in info else None
    return addon_state, optimizer_state, info


def tmp_checkpoint_dir(output_dir: Path, step: int) -> Path:
    """Where a checkpoint is written before :func:`publish_checkpoint` renames it into place."""
    return Path(output_dir) / f"checkpoint-{step}{TMP_MARK}write"


def publish_checkpoint(tmp: Path, output_dir: Path, step: int, keep: int | None) -> Path:
    """Rename a complete temporary checkpoint folder to ``checkpoint-<step>`` and prune old ones."""
    final = checkpoint_dir(output_dir, step)
    publish_dir(tmp, final)
    prune_checkpoints(output_dir, keep)
    return final
