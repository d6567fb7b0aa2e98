"""Load JointDiT's addon weight dtype: fp8 addon weights (chosen, or from an fp8 file) computed in the model's
dtype through ComfyUI's casting ops, against the official reference outputs (tests/data/golden_tiny.*)."""

from __future__ import annotations

import pytest
import torch
from test_comfyui_golden import TOL, addon_checkpoint, pack, raw_forward, tiny  # noqa: F401  (fixtures)

# relative L2 error of the velocity against the official fp32 reference, over the five forward cases; fp8
# rounds each addon weight to 3 (e4m3fn) or 2 (e5m2) mantissa bits (relative steps 1/16, 1/8)
FP8_TOLERANCE = {"fp8_e4m3fn": 0.02, "fp8_e5m2": 0.04}  # measured: 0.0085, 0.018


def _addon_linears(patched):
    (addon_patcher,) = patched.additional_models["jointdit"]
    return [m for m in addon_patcher.model.modules() if isinstance(m, torch.nn.Linear)], addon_patcher


def _errors(pack, golden, patched):
    tensors, meta = golden
    h, w = meta["latent_hw"]
    x = pack.core.latents.unpack(tensors["case.x"], h, w)
    errors = []
    for case in (c for c in meta["cases"] if c["kind"] == "forward"):
        out = pack.core.latents.pack(raw_forward(pack, patched, x, torch.tensor([case["t_rgb"], case["t_depth"]]), tensors, meta))
        ref = tensors[f"case.{case['output']}"]
        errors.append(((out - ref).norm() / ref.norm()).item())
    return errors


@pytest.mark.parametrize("weight_dtype", ["fp8_e4m3fn", "fp8_e5m2"])
@pytest.mark.parametrize("source", ["weight_dtype input", "fp8 file"])
def test_fp8_addons_follow_the_official_reference(pack, golden, tiny, addon_checkpoint, tmp_path, weight_dtype, source):  # noqa: F811
    tensors, _ = golden
    plain, exact, _ = tiny
    dtype = pack.model_patch.WEIGHT_DTYPES[weight_dtype]
    if source == "fp8 file":
        addon = {k[len("addon.") :]: v for k, v in tensors.items() if k.startswith("addon.")}
        path = pack.core.checkpoint.save_addons(tmp_path / "addon_fp8.safetensors", addon, dtype=dtype)
        patched = pack.model_patch.apply_jointdit(plain, pack.core.checkpoint.load_addons(path))
    else:
        patched = pack.model_patch.apply_jointdit(plain, addon_checkpoint(), weight_dtype=weight_dtype)
    linears, addon_patcher = _addon_linears(patched)
    assert linears and all(m.weight.dtype == dtype for m in linears)  # stored in fp8 ...
    assert all(m.comfy_cast_weights for m in linears)  # ... and cast per call to the compute dtype (fp32 here)
    assert addon_patcher.model_size() < 0.3 * _addon_linears(exact)[1].model_size()  # fp32 -> fp8: a quarter
    errors = _errors(pack, golden, patched)
    assert max(errors) < FP8_TOLERANCE[weight_dtype], errors
    assert max(errors) > TOL  # the fp8 weights are what ran
    print(weight_dtype, source, "max relative error", max(errors))


def test_unknown_weight_dtype_is_refused(pack, tiny, addon_checkpoint):  # noqa: F811
    plain, _, _ = tiny
    with pytest.raises(ValueError, match="weight_dtype 'fp4'"):
        pack.model_patch.apply_jointdit(plain, addon_checkpoint(), weight_dtype="fp4")
