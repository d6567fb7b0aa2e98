"""The FLUX.1-dev-size model, built on the meta device, has exactly the official names and shapes."""

import json

import torch

from conftest import DATA
from jointdit_core import FluxConfig, JointDiT
from jointdit_core.checkpoint import check_addon_shapes, infer_addon_config


def _official():
    return json.loads((DATA / "official_keys.json").read_text())


def _shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_flux_dev_base_and_addons_match_official_keys():
    official = _official()
    with torch.device("meta"):
        model = JointDiT(FluxConfig())
    base, addons = _shapes(model.base), _shapes(model.addons)
    assert set(base) == set(official["flux_dev_base"]), (
        set(base) ^ set(official["flux_dev_base"])
    )
    assert set(addons) == set(official["jointdit_addons"]), set(addons) ^ set(official["jointdit_addons"])
    assert base == official["flux_dev_base"]
    assert addons == official["jointdit_addons"]
    assert len(base) == 780 and len(addons) == 500
    assert round(sum(torch.Size(s).numel() for s in addons.values()) / 1e9, 2) == 2.35


def test_config_inferred_from_official_shapes():
    official = _official()
    assert FluxConfig.from_state_dict(official["flux_dev_base"]) == FluxConfig()
    sizes, ranks = infer_addon_config(official["jointdit_addons"])
    assert sizes["hidden_size"] == 3072 and sizes["depth"] == 19 and sizes["depth_single_blocks"] == 38
    assert (ranks.txt_in, ranks.vector_in_in_layer, ranks.vector_in_out_layer, ranks.blocks) == (1024, 512, 1024, 64)
    config, _ = check_addon_shapes(official["jointdit_addons"], FluxConfig())
    assert config == FluxConfig()
