"""Shared fixtures: the official golden_tiny reference, split into the files a user would have."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The tests use tiny models: one intra-op thread is as fast and does not stall on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def trainer_key(tmp_path_factory):
    """The trainer signs checkpoints with a key in the user's config folder; tests use a temporary one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JOINTDIT_TRAINER_KEY_FILE", str(tmp_path_factory.mktemp("trainer_key") / "checkpoint.key"))
        yield


@pytest.fixture(scope="session")
def golden():
    """(tensors, meta) of tests/data/golden_tiny.* (the official reference, made by running the official model code)."""
    return load_file(str(DATA / "golden_tiny.safetensors")), json.loads((DATA / "golden_tiny.json").read_text())


@pytest.fixture(scope="session")
def golden_files(golden, tmp_path_factory):
    """The golden base and addon weights written as a BFL Flux file and an official addon file + sidecar."""
    tensors, _ = golden
    folder = tmp_path_factory.mktemp("golden")
    base = {k[len("base.") :]: v for k, v in tensors.items() if k.startswith("base.")}
    addon = {k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")}
    save_file(base, str(folder / "flux1-tiny.safetensors"))
    save_file(addon, str(folder / "jointdit.safetensors"))
    (folder / "jointdit.json").write_text(json.dumps({"is_txt_ids_training": False, "is_attnmask_training": False, "depth_transform": "none"}))
    return folder / "flux1-tiny.safetensors", folder / "jointdit.safetensors"


@pytest.fixture(scope="session")
def golden_model(golden_files):
    from jointdit_core.checkpoint import load_jointdit

    model, _ = load_jointdit(*golden_files)
    return model


@pytest.fixture(scope="session")
def golden_inputs(golden):
    """Inputs shared by every golden case: x, txt/vec repeated for both rows, ids, guidance 3.5."""
    from jointdit_core.latents import image_ids, text_ids

    tensors, meta = golden
    h, w = meta["latent_hw"]
    return {
        "x": tensors["case.x"],
        "txt": tensors["case.txt"].repeat(2, 1, 1),
        "y": tensors["case.vec"].repeat(2, 1),
        "img_ids": image_ids(2, h, w),
        "txt_ids": text_ids(2, meta["txt_tokens"]),
        "guidance": torch.full((2,), meta["guidance"]),
    }
