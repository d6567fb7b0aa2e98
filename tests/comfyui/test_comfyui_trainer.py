"""The trainer's output file goes through LoadJointDiT in ComfyUI and runs what jointdit_core runs.

A tiny model is trained for a few steps with ``trainer`` on a random latent cache (needs accelerate
and transformers in ComfyUI's Python; the text encoders are not needed); the written ``jointdit_addons.safetensors`` is picked from the ``jointdit`` model
folder by ``LoadJointDiT.execute`` and patched onto ComfyUI's own Flux built with the tiny config.
Its velocity must match :class:`jointdit_core.model.JointDiT` loaded from the same files.
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest
import torch
from comfyui_harness import REPO, flux_unet_config, load_pack


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def test_trained_addons_load_through_loadjointdit(pack, tmp_path):
    pytest.importorskip("accelerate", reason="the trainer needs accelerate in ComfyUI's Python (pip install accelerate)")
    pytest.importorskip("transformers", reason="the trainer needs transformers in ComfyUI's Python")
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import folder_paths
    from safetensors.torch import load_file

    sys.path.insert(0, str(REPO / "tests"))
    from test_comfyui_golden import raw_forward
    from jointdit_trainer.config import load_config
    from jointdit_trainer.train import train
    from trainer_tiny import TINY_FLUX, TINY_RANKS, make_flux, make_random_cache

    values = {
        "flux_path": str(make_flux(tmp_path / "flux-tiny.safetensors")),
        "cache_dir": str(make_random_cache(tmp_path / "cache")),
        "output_dir": str(tmp_path / "out"), "lora_ranks": TINY_RANKS, "mixed_precision": "no",
        "gradient_checkpointing": False, "dataloader_num_workers": 0, "log_with": "none",
        "sample_every_n_steps": 0, "save_every_n_steps": 0, "learning_rate": 1e-2, "max_train_steps": 20,
    }
    final = train(load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in values.items()]))

    c = TINY_FLUX
    unet_config = flux_unet_config(
        vec_in_dim=c.vec_in_dim, context_in_dim=c.context_in_dim, hidden_size=c.hidden_size, mlp_ratio=c.mlp_ratio,
        num_heads=c.num_heads, depth=c.depth, depth_single_blocks=c.depth_single_blocks,
        axes_dim=list(c.axes_dim), theta=c.theta, qkv_bias=c.qkv_bias, guidance_embed=c.guidance_embed,
    )
    model_config = comfy.supported_models.Flux(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, "")
    model.load_model_weights(load_file(values["flux_path"]), "")
    plain = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    folder_paths.folder_names_and_paths["jointdit"] = ([str(final.parent)], {".safetensors"})
    LoadJointDiT = importlib.import_module(f"{pack.pack.__name__}.nodes.loader").LoadJointDiT
    patched = LoadJointDiT.execute(plain, final.name).result[0]

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 8, 8, generator=g)  # rows: rgb, depth
    t = torch.tensor([0.7, 0.3])
    inputs = {"case.txt": torch.randn(1, 8, c.context_in_dim, generator=g), "case.vec": torch.randn(1, c.vec_in_dim, generator=g)}
    meta = {"guidance": 3.5}
    comfy_v = raw_forward(pack, patched, x, t, inputs, meta)

    core = pack.core
    reference, _ = core.checkpoint.load_jointdit(values["flux_path"], final)
    with torch.no_grad():
        ref = reference(
            core.latents.pack(x), core.latents.image_ids(2, 8, 8), inputs["case.txt"].repeat(2, 1, 1),
            core.latents.text_ids(2, 8), t, inputs["case.vec"].repeat(2, 1), torch.full((2,), 3.5),
        )
    assert (core.latents.pack(comfy_v) - ref).abs().max().item() < 1e-4
    plain_v = raw_forward(pack, plain, x, t, inputs, meta)
    assert (comfy_v - plain_v).abs().max().item() > 1e-3  # the trained addons change the prediction
