"""A GGUF-quantized Flux base through city96's ComfyUI-GGUF (``UnetLoaderGGUF``), the loader most Flux users on
small cards use, with *Load JointDiT* applied on top.

The test writes a small Flux (FLUX.1-dev's width and text width, which ComfyUI 0.3.64's model detection assumes,
with one double and one single block) as GGUF files with the ``gguf`` package: unquantized (BF16, as ComfyUI-GGUF's
converter writes FLUX.1-dev) and quantized (Q8_0 and Q4_0 for every 2-d weight, 1-d tensors in F32, as that
converter does). It loads each with
``UnetLoaderGGUF`` (memory-mapped, as for users), applies the same random JointDiT addons to each, and runs depth
estimation and joint generation with the JointSampler code.

Stated tolerance (relative L2 difference of the sampled latents to the unquantized file's, 4 steps, random
weights): Q8_0 < 3%, Q4_0 < 25% (measured on ComfyUI 0.33.0: 0.8% and 12%, in both tasks). The quantized runs
must also differ from the unquantized one (the GGUF weights are really used), Q8_0 less than Q4_0.

Needs ``COMFYUI_GGUF_PATH`` (a ComfyUI-GGUF checkout; ``scripts/comfyui_env.sh`` provides one) and the
``gguf`` package in ComfyUI's Python; skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from comfyui_harness import load_pack

TOLERANCE = {"Q8_0": 0.03, "Q4_0": 0.25}


@pytest.fixture(scope="module")
def gguf_nodes():
    """ComfyUI-GGUF's nodes module, imported as ComfyUI imports a custom node."""
    pack = load_pack()
    path = os.environ.get("COMFYUI_GGUF_PATH")
    if not path or not (Path(path) / "nodes.py").is_file():
        pytest.skip("COMFYUI_GGUF_PATH is not set to a ComfyUI-GGUF checkout (scripts/comfyui_env.sh prints one)")
    pytest.importorskip("gguf", reason="the gguf package is missing in ComfyUI's Python (pip install gguf)")
    name = "ComfyUI_GGUF_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(path) / "__init__.py", submodule_search_locations=[path])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return pack, importlib.import_module(f"{name}.nodes")


def _config():
    from jointdit_core.config import FluxConfig

    return FluxConfig(vec_in_dim=64, depth=1, depth_single_blocks=1)


def _random(shapes: dict, seed: int, scale: float = 1.0) -> dict:
    """bf16 tensors (as FLUX.1-dev ships): weights ~ N(0, 1/fan_in) * scale, norm scales 1, biases small."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith(".scale"):
            out[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            out[name] = torch.randn(shape, generator=g) * 0.02
        else:
            out[name] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:])) * scale
        out[name] = out[name].to(torch.bfloat16)
    return out


def _write_gguf(path: Path, state: dict, qtype_name: str) -> None:
    """A GGUF file as ComfyUI-GGUF's converter writes one (arch "flux"): every 2-d weight in ``qtype_name``, the rest F32."""
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    writer = gguf.GGUFWriter(path=None, arch="flux")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, tensor in state.items():
        data = tensor.float().numpy()
        kind = qtype if data.ndim == 2 and data.shape[-1] % 32 == 0 else gguf.GGMLQuantizationType.F32
        writer.add_tensor(key, gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def models(gguf_nodes, tmp_path_factory):
    """{"BF16": unquantized (as converters write FLUX.1-dev), "Q8_0": ..., "Q4_0": ...}: the plain MODELs from UnetLoaderGGUF, the JointDiT MODELs, the conditioning."""
    import folder_paths

    from jointdit_core.checkpoint import expected_addon_shapes, load_addons, save_addons
    from jointdit_core.flux import Flux

    pack, nodes = gguf_nodes
    config = _config()
    with torch.device("meta"):
        base_shapes = {k: list(v.shape) for k, v in Flux(config).state_dict().items()}
    folder = tmp_path_factory.mktemp("gguf")
    base = _random(base_shapes, 0)
    for qtype in ("BF16", *TOLERANCE):
        _write_gguf(folder / f"flux-small-{qtype}.gguf", base, qtype)
    del base  # about 1.1 GB; the loader maps the files instead
    save_addons(folder / "addons.safetensors", _random(expected_addon_shapes(config), 1, scale=0.5), {"depth_transform": "none"}, dtype=torch.float32)
    addons = load_addons(folder / "addons.safetensors")

    saved = dict(folder_paths.folder_names_and_paths)
    folder_paths.folder_names_and_paths["diffusion_models"] = ([str(folder)], {".gguf"})
    folder_paths.folder_names_and_paths["unet_gguf"] = ([str(folder)], {".gguf"})
    folder_paths.filename_list_cache.clear()
    try:
        loaded = {qtype: nodes.UnetLoaderGGUF().load_unet(f"flux-small-{qtype}.gguf")[0] for qtype in ("BF16", *TOLERANCE)}
    finally:
        folder_paths.folder_names_and_paths.clear()
        folder_paths.folder_names_and_paths.update(saved)
        folder_paths.filename_list_cache.clear()
    patched = {k: pack.model_patch.apply_jointdit(m, addons, "addons.safetensors") for k, m in loaded.items()}
    g = torch.Generator().manual_seed(5)
    cond = [[torch.randn(1, 8, config.context_in_dim, generator=g), {"pooled_output": torch.randn(1, config.vec_in_dim, generator=g), "guidance": 3.5}]]
    return pack, loaded, patched, cond


def test_the_gguf_loader_really_holds_quantized_weights(models):
    _, loaded, _, _ = models
    for qtype in TOLERANCE:
        linear1 = loaded[qtype].model.diffusion_model.single_blocks[0].linear1.weight
        assert getattr(linear1, "tensor_type", None) is not None and linear1.tensor_type.name == qtype, type(linear1)


@pytest.mark.parametrize("task", ["depth_estimation", "joint_generation"])
def test_jointdit_on_a_gguf_base_stays_within_the_stated_tolerance_of_the_unquantized_base(models, task):
    pack, _, patched, cond = models
    g = torch.Generator().manual_seed(11)
    image = {"samples": torch.randn(1, 16, 16, 16, generator=g) if task == "depth_estimation" else torch.zeros(1, 16, 16, 16)}
    runs = {}
    for name, model in patched.items():
        rgb, depth = pack.sampler.JointSampler.execute(model, cond, task, 3, 4, image=image).result
        runs[name] = torch.cat([rgb["samples"].flatten(), depth["samples"].flatten()]).detach()
        assert torch.isfinite(runs[name]).all(), name
    reference = runs["BF16"]
    errors = {q: float((runs[q] - reference).norm() / reference.norm()) for q in TOLERANCE}
    print(f"{task}: relative L2 difference to the unquantized GGUF: " + ", ".join(f"{q} {e:.4f}" for q, e in errors.items()))
    for qtype, tolerance in TOLERANCE.items():
        assert 0 < errors[qtype] < tolerance, errors
    assert errors["Q8_0"] < errors["Q4_0"], errors  # fewer bits, larger difference
