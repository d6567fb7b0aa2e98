"""Addon files: loading in every stored dtype and under any name, saving, and each refusal."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from jointdit_core import FluxConfig, JointAddons, LoraRanks
from jointdit_core.checkpoint import AddonFileError, WeightFileError, load_addons, load_flux_weights, save_addons

TINY = FluxConfig(vec_in_dim=32, context_in_dim=48, hidden_size=128, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=(16, 24, 24))
SMALL_RANKS = LoraRanks(txt_in=8, vector_in_in_layer=8, vector_in_out_layer=8, blocks=4)


def _addon_state(config=TINY, ranks=SMALL_RANKS, seed=0):
    torch.manual_seed(seed)
    addons = JointAddons(config, ranks)
    for p in addons.parameters():
        torch.nn.init.normal_(p)
    return addons


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("name", ["jointdit.safetensors", "jointdit_addons.safetensors", "my renamed file.safetensors"])
def test_roundtrip_any_dtype_and_name(tmp_path, dtype, name):
    addons = _addon_state()
    path = save_addons(tmp_path / name, addons, {"depth_transform": "inverse"}, dtype=dtype)
    loaded = load_addons(path, TINY)
    assert loaded.depth_transform == "inverse"
    assert loaded.ranks == SMALL_RANKS
    for k, v in addons.state_dict().items():
        assert loaded.state_dict[k].dtype == dtype
        assert torch.equal(loaded.state_dict[k], v.to(dtype))
    assert json.loads(path.with_suffix(".json").read_text())["depth_transform"] == "inverse"


def test_sidecar_under_official_name_is_found_for_renamed_file(tmp_path):
    save_addons(tmp_path / "jointdit_addons.safetensors", _addon_state(), {"depth_transform": "inverse"})
    (tmp_path / "jointdit_addons.safetensors").rename(tmp_path / "renamed.safetensors")
    assert load_addons(tmp_path / "renamed.safetensors", TINY).depth_transform == "inverse"


def test_saved_file_is_official_layout_bf16(tmp_path):
    path = save_addons(tmp_path / "a.safetensors", _addon_state())
    state = load_file(str(path))
    assert all(v.dtype == torch.bfloat16 for v in state.values())
    assert set(state) == set(JointAddons(TINY, SMALL_RANKS).state_dict())
    assert not list(tmp_path.glob("*.tmp")), "atomic write left a temporary file"


def test_refuses_plain_flux_lora(tmp_path):
    path = tmp_path / "style_lora.safetensors"
    save_file({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.zeros(4, 128),
               "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.zeros(384, 4)}, str(path))
    with pytest.raises(AddonFileError, match="plain Flux LoRA.*LoraLoaderModelOnly"):
        load_addons(path, TINY)


def test_refuses_addon_for_other_model_size_and_names_the_size(tmp_path):
    other = FluxConfig(vec_in_dim=32, context_in_dim=48, hidden_size=64, num_heads=1, depth=1, depth_single_blocks=3, axes_dim=(16, 24, 24))
    path = save_addons(tmp_path / "a.safetensors", _addon_state(other))
    with pytest.raises(AddonFileError) as err:
        load_addons(path, TINY)
    msg = str(err.value)
    assert "another model size" in msg and "hidden 64, 1 double + 3 single blocks" in msg and "hidden 128" in msg


def test_refuses_flux_dev_addon_on_small_base_naming_flux_dev(tmp_path):
    from jointdit_core.checkpoint import check_addon_shapes
    from conftest import DATA

    official = json.loads((DATA / "official_keys.json").read_text())["jointdit_addons"]
    with pytest.raises(AddonFileError, match=r"FLUX\.1-dev"):
        check_addon_shapes(official, TINY, "jointdit.safetensors")


def _save_modified(tmp_path, change):
    state = {k: v.to(torch.bfloat16) for k, v in _addon_state().state_dict().items()}
    change(state)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    return path


def test_refuses_missing_tensors(tmp_path):
    path = _save_modified(tmp_path, lambda s: s.pop("single_blocks.1.joint2.bias"))
    with pytest.raises(AddonFileError, match=r"missing 1 tensors \(single_blocks\.1\.joint2\.bias\)"):
        load_addons(path, TINY)


def test_refuses_unexpected_tensors(tmp_path):
    path = _save_modified(tmp_path, lambda s: s.__setitem__("double_blocks.0.img_mlp.0.lora_A.weight", torch.zeros(4, 128)))
    with pytest.raises(AddonFileError, match=r"unexpected 1 tensors \(double_blocks\.0\.img_mlp\.0\.lora_A\.weight\)"):
        load_addons(path, TINY)


def test_refuses_misshaped_tensors(tmp_path):
    path = _save_modified(tmp_path, lambda s: s.__setitem__("double_blocks.1.img_attn.qkv.lora_B.weight", torch.zeros(380, 4)))
    with pytest.raises(AddonFileError, match=r"mis-shaped.*double_blocks\.1\.img_attn\.qkv\.lora_B\.weight: \[380, 4\] in the file, \[384, 4\] expected"):
        load_addons(path, TINY)


def test_refuses_truncated_file(tmp_path):
    path = save_addons(tmp_path / "a.safetensors", _addon_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(AddonFileError, match="truncated"):
        load_addons(path, TINY)


# pickle.dumps({"joint1": <object whose unpickling runs exec("raise SystemExit('unpickled!')")>})
MALICIOUS_PICKLE = (
    b"\x80\x04\x95F\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x06joint1\x94\x8c\x08builtins\x94\x8c\x04exec"
    b"\x94\x93\x94\x8c\x1eraise SystemExit('unpickled!')\x94\x85\x94R\x94s."
)


def test_refuses_pickle_file_without_unpickling(tmp_path):
    path = tmp_path / "jointdit.ckpt"
    path.write_bytes(MALICIOUS_PICKLE)
    with pytest.raises(AddonFileError, match="not a readable safetensors file"):
        load_addons(path, TINY)


def test_refuses_nan_weights(tmp_path):
    path = _save_modified(tmp_path, lambda s: s["txt_in.lora_A.weight"].__setitem__((0, 0), float("nan")))
    with pytest.raises(AddonFileError, match="NaN"):
        load_addons(path, TINY)


def test_refuses_unsupported_sidecar_flags(tmp_path):
    path = save_addons(tmp_path / "a.safetensors", _addon_state(), {"is_txt_ids_training": True})
    with pytest.raises(AddonFileError, match="is_txt_ids_training"):
        load_addons(path, TINY)


def test_missing_file_and_non_flux_base(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_addons(tmp_path / "nope.safetensors", TINY)
    path = tmp_path / "ae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}, str(path))
    with pytest.raises(WeightFileError, match="not a BFL-layout Flux"):
        load_flux_weights(path)


def _with_sidecar(tmp_path, text: str):
    path = save_addons(tmp_path / "a.safetensors", _addon_state())
    path.with_suffix(".json").write_text(text)
    return path


def test_an_unknown_sidecar_key_stops_the_load_naming_it_the_file_and_the_escape(tmp_path):
    path = _with_sidecar(tmp_path, json.dumps({"depth_tranform": "inverse", "foo": 1}))
    with pytest.raises(AddonFileError) as info:  # a misspelt flag must not run silently with the default
        load_addons(path, TINY)
    message = str(info.value)
    assert "'depth_tranform' (did you mean 'depth_transform'?)" in message and "'foo'" in message
    assert str(path.with_suffix(".json")) in message and "'x_'" in message


def test_sidecar_keys_starting_with_x_are_ignored(tmp_path):
    path = _with_sidecar(tmp_path, json.dumps({"depth_transform": "inverse", "x_note": "trained on my photos", "x_tool": {"v": 2}}))
    assert load_addons(path, TINY).depth_transform == "inverse"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"is_txt_ids_training": "false"}, r'is_txt_ids_training is "false", which is not a boolean'),
        ({"is_attnmask_training": 0}, r"is_attnmask_training is 0, which is not a boolean"),
        ({"depth_transform": 1}, r"depth_transform is 1, which is not a string"),
        ({"depth_transform": None}, r"depth_transform is null, which is not a string"),
    ],
)
def test_sidecar_values_of_the_wrong_type_are_refused_naming_key_value_type_and_file(tmp_path, flags, expected):
    path = _with_sidecar(tmp_path, json.dumps(flags))
    with pytest.raises(ValueError, match=expected) as info:
        load_addons(path, TINY)
    assert str(path.with_suffix(".json")) in str(info.value)
    with pytest.raises(AddonFileError, match=expected):  # and nothing of the kind is written
        save_addons(tmp_path / "b.safetensors", _addon_state(), flags)
    assert not (tmp_path / "b.safetensors").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (json.dumps({"depth_transform": "inverted"}), 'depth_transform is "inverted"; it must be one of "none" or "inverse"'),
        (json.dumps({"is_attnmask_training": True}), "says is_attnmask_training=true"),
    ],
)
def test_every_sidecar_error_names_the_file(tmp_path, text, expected):
    path = _with_sidecar(tmp_path, text)
    with pytest.raises(AddonFileError, match=expected) as info:
        load_addons(path, TINY)
    assert str(path.with_suffix(".json")) in str(info.value)
