"""Preprocessing: dataset layout, image/depth geometry and conventions, text encoders, skip reports, cache checks."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from jointdit_core.checkpoint import load_autoencoder
from jointdit_trainer.config import load_config
from jointdit_trainer.data import CachedPairs, scan_dataset
from jointdit_trainer.preprocess import preprocess
from jointdit_trainer.text_encoders import TextEncoders
from trainer_tiny import make_setup


def cfg_of(values, **changes):
    return load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in {**values, **changes}.items()])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """4 good samples plus 4 broken ones, preprocessed with the posterior mean (deterministic latents)."""
    root = tmp_path_factory.mktemp("trainer_data")
    values = make_setup(root, n=4, extras=True)
    values["latent_sample"] = False
    manifest = preprocess(cfg_of(values))
    return root, values, manifest


def expected_crop(path, size=32, resample=Image.Resampling.LANCZOS, mode=None):
    """The images are 48x40: shorter side 40 -> 32 gives 38x32, centre crop starts at x = 3."""
    im = Image.open(path)
    im = im.convert(mode) if mode else im
    return im.resize((38, 32), resample=resample).crop((3, 0, 35, 32))


def test_scan_reads_all_caption_and_depth_forms(made, tmp_path):
    root, values, _ = made
    samples, problems = scan_dataset(values["dataset_dir"])
    by_stem = {s.stem: s for s in samples}
    assert sorted(by_stem) == ["badaspect", "colourdepth", "corrupt", "nodepth", "s0", "s1", "s2", "s3"]
    assert by_stem["s0"].depth_path.suffix == ".png" and by_stem["s1"].depth_path.suffix == ".npy"
    assert by_stem["s0"].caption == "a red ball on the floor"  # captions/s0.txt
    assert by_stem["s1"].caption == "a blue ball on the table"  # captions.jsonl
    assert by_stem["nodepth"].depth_path is None and by_stem["nodepth"].caption is None
    assert problems == []
    copy = tmp_path / "copy"
    shutil.copytree(values["dataset_dir"], copy)
    np.save(copy / "depth" / "orphan.npy", np.ones((4, 4), np.float32))
    (copy / "captions" / "lonely.txt").write_text("x")
    _, problems = scan_dataset(copy)
    assert {p["stem"]: p["reason"] for p in problems} == {
        "orphan": "depth map orphan.npy has no image; ignored",
        "lonely": "caption has no image; ignored",
    }
    with pytest.raises(FileNotFoundError, match="no images/ folder"):
        scan_dataset(tmp_path)


def test_broken_samples_are_reported_not_dropped(made):
    _, values, manifest = made
    assert manifest["samples"] == ["s0", "s1", "s2", "s3"]
    reasons = {item["stem"]: item["reason"] for item in manifest["skipped"]}
    assert set(reasons) == {"corrupt", "nodepth", "colourdepth", "badaspect"}
    assert "cannot identify image" in reasons["corrupt"]
    assert "no depth map" in reasons["nodepth"] and "depth_model" in reasons["nodepth"]
    assert "colour image" in reasons["colourdepth"]
    assert "aspect ratio" in reasons["badaspect"]
    assert manifest["captions_missing"] == 0


def test_cached_latents_follow_the_depth_convention(made, tmp_path):
    root, values, _ = made
    ae = load_autoencoder(values["ae_path"])
    data = root / "data"
    cached = load_file(str(root / "cache" / "samples" / "s0.safetensors"))

    rgb = np.asarray(expected_crop(data / "images" / "s0.png", mode="RGB"), dtype=np.float32) / 127.5 - 1
    with torch.no_grad():
        want = ae.encode(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0]
    assert torch.allclose(cached["image_latent"], want, atol=1e-5)

    raw = np.asarray(Image.open(data / "depth" / "s0.png"), dtype=np.float32)  # 16-bit disparity
    disp = np.asarray(Image.fromarray(raw, mode="F").resize((38, 32), Image.Resampling.BILINEAR).crop((3, 0, 35, 32)))
    d01 = (disp - disp.min()) / (disp.max() - disp.min())
    for transform, cache in (("none", root / "cache"), ("inverse", tmp_path / "cache_inv")):
        if transform == "inverse":
            preprocess(cfg_of(values, depth_transform="inverse", cache_dir=str(cache)))
            assert json.loads((cache / "cache.json").read_text())["depth_transform"] == "inverse"
        shown = 1 - d01 if transform == "inverse" else d01  # inverse: near = dark
        x = torch.from_numpy(shown * 2 - 1).float()[None, None].expand(1, 3, -1, -1)
        with torch.no_grad():
            want = ae.encode(x)[0]
        got = load_file(str(cache / "samples" / "s0.safetensors"))["depth_latent"]
        assert torch.allclose(got, want, atol=1e-4), transform


def test_cached_text_embeddings(made):
    root, values, _ = made
    enc = TextEncoders(values["clip_l"], values["t5xxl"], t5_max_length=8)
    t5, pooled = enc.encode(["a blue ball on the table", ""])
    s1 = load_file(str(root / "cache" / "samples" / "s1.safetensors"))
    empty = load_file(str(root / "cache" / "empty_prompt.safetensors"))
    assert s1["t5"].shape == (8, 32) and s1["clip_pooled"].shape == (16,)
    assert torch.allclose(s1["t5"], t5[0], atol=1e-6) and torch.allclose(s1["clip_pooled"], pooled[0], atol=1e-6)
    assert torch.allclose(empty["t5"], t5[1], atol=1e-6) and torch.allclose(empty["clip_pooled"], pooled[1], atol=1e-6)
    assert not torch.allclose(t5[0], t5[1])
    prompts, cond = CachedPairs(root / "cache").sample_prompts()
    assert prompts == ["a red ball on the table"] and cond["t5"].shape == (1, 8, 32)


def test_single_file_text_encoders_match_folders(made, tmp_path):
    _, values, _ = made
    from transformers import CLIPTextConfig, CLIPTextModel, T5EncoderModel

    # single files do not store CLIP's head count: it is hidden // 64 as in CLIP-L, so this CLIP has head dim 64
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=17, hidden_size=128, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=12, bos_token_id=0, eos_token_id=1,
                                        pad_token_id=0))
    clip_dir = tmp_path / "clip_folder"
    clip.save_pretrained(str(clip_dir))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{values['clip_l']}/{name}", clip_dir / name)
    clip_sd = {f"text_model.{k}": v for k, v in clip.state_dict().items()}
    save_file(clip_sd, str(tmp_path / "clip_l.safetensors"))  # ComfyUI layout: text_model. prefix
    t5_sd = T5EncoderModel.from_pretrained(values["t5xxl"]).state_dict()
    t5_sd.pop("encoder.embed_tokens.weight")  # tied to shared.weight
    save_file({k: v.contiguous() for k, v in t5_sd.items()}, str(tmp_path / "t5xxl_fp16.safetensors"))
    prompts = ["a red ball", "the cat on the sofa", ""]
    ref = TextEncoders(clip_dir, values["t5xxl"], t5_max_length=8).encode(prompts)
    single = TextEncoders(
        tmp_path / "clip_l.safetensors", tmp_path / "t5xxl_fp16.safetensors",
        clip_tokenizer=clip_dir, t5_tokenizer=values["t5xxl"], t5_max_length=8,
    ).encode(prompts)
    for a, b in zip(ref, single):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="clip_tokenizer"):
        TextEncoders(tmp_path / "clip_l.safetensors", values["t5xxl"])


def test_depth_anything_fills_missing_depth_maps(made, tmp_path):
    """The Depth-Anything-V2 path, run with a tiny random model of that architecture."""
    root, values, _ = made
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    folder = tmp_path / "depth_anything"
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=56,
                            patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False)
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=backbone, fusion_hidden_size=16, neck_hidden_sizes=[8, 16, 32, 32], head_hidden_size=8,
        reassemble_hidden_size=32,
    )).save_pretrained(str(folder))
    DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14).save_pretrained(str(folder))
    cache = tmp_path / "cache"
    manifest = preprocess(cfg_of(values, depth_model=str(folder), cache_dir=str(cache)))
    assert "nodepth" in manifest["samples"]
    assert "nodepth" not in {s["stem"] for s in manifest["skipped"]}

    from jointdit_trainer.preprocess import DepthEstimator

    cropped = expected_crop(root / "data" / "images" / "nodepth.png", mode="RGB")
    disp = torch.from_numpy(DepthEstimator(folder, torch.device("cpu"))(cropped))
    assert disp.shape == (32, 32)
    d01 = (disp - disp.min()) / (disp.max() - disp.min())
    with torch.no_grad():
        want = load_autoencoder(values["ae_path"]).encode((d01 * 2 - 1)[None, None].expand(1, 3, -1, -1))[0]
    assert torch.allclose(load_file(str(cache / "samples" / "nodepth.safetensors"))["depth_latent"], want, atol=1e-4)

    with pytest.raises(FileNotFoundError, match="depth_model=.*config.json missing"):
        preprocess(cfg_of(values, depth_model=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "c2")))


def test_cache_check_skips_and_reports_damaged_files(made, tmp_path):
    root, _, _ = made
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    path = cache / "samples" / "s2.safetensors"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    bad = load_file(str(cache / "samples" / "s3.safetensors"))
    bad["t5"] = bad["t5"][:4]
    save_file(bad, str(cache / "samples" / "s3.safetensors"))
    ds = CachedPairs(cache)
    assert ds.stems == ["s0", "s1"] and len(ds) == 2
    reasons = {s["stem"]: s["reason"] for s in ds.skipped if s["stage"] == "cache check"}
    assert "unreadable safetensors file" in reasons["s2"]
    assert reasons["s3"] == "tensor t5 has shape [4, 32], expected [8, 32]"
    assert {s["stem"] for s in ds.skipped if s["stage"] == "preprocess"} == {"corrupt", "nodepth", "colourdepth", "badaspect"}
    item = ds[1]
    assert item["image_latent"].shape == (16, 8, 8) and item["index"] == 1
    with pytest.raises(FileNotFoundError, match="trainer preprocess"):
        CachedPairs(tmp_path / "empty")
