"""The deterministic single depth step (zero_depth_noise) and the weight-memory table of benchmarks/memory_table.py."""

import importlib.util
import json
import math

import torch

from conftest import DATA
from jointdit_core.pipeline import generate


def test_zero_depth_noise_makes_depth_estimation_independent_of_the_seed(golden, golden_model):
    tensors, meta = golden
    h, w = meta["latent_hw"]
    z = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(3))

    def depth(seed, zero):
        return generate(golden_model, tensors["case.txt"], tensors["case.vec"], "depth_estimation", rgb_latent=z, steps=1, seed=seed, progress=False, zero_depth_noise=zero)[1]

    assert torch.equal(depth(0, True), depth(7, True))
    assert not torch.equal(depth(0, False), depth(7, False))
    assert not torch.equal(depth(0, True), depth(0, False))


def _memory_table():
    spec = importlib.util.spec_from_file_location("memory_table", DATA.parents[1] / "benchmarks" / "memory_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_table_counts_the_official_shapes_per_format():
    table = _memory_table()
    official = json.loads((DATA / "official_keys.json").read_text())
    addons = official["jointdit_addons"]
    params = sum(math.prod(s) for s in addons.values())
    assert table.weight_gib(addons, "bf16") == 2 * table.weight_gib(addons, "fp8") == 2 * params / 2**30
    assert table.tensor_bytes([3072], "Q4_0") == 4 * 3072  # vectors stay F32, as ComfyUI-GGUF converts
    assert table.tensor_bytes([3072, 3072], "Q8_0") == 3072 * 3072 // 32 * 34
    rows = table.main(["--activations", "1.5"]).splitlines()[2:]
    assert len(rows) == 8 and rows[0].startswith("| bf16 | bf16 |") and "lowvram | lowvram | lowvram" in rows[0]
    assert rows[-1].startswith("| Q4_0 | fp8 |") and rows[-1].endswith("fits | fits | fits |")
