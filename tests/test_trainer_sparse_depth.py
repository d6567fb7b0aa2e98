"""Sparse depth: a validity mask from 16-bit KITTI PNGs through preprocessing to the latent grid and the loss."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from jointdit_core.latents import pack, unpack
from jointdit_trainer.config import TrainConfig, load_config
from jointdit_trainer.data import load_sparse_disparity
from jointdit_trainer.sparse_depth import fill_missing, latent_validity, masked_mean, normalize_valid
from jointdit_trainer.train import flow_matching_loss
from trainer_tiny import make_setup


def _batch_with_mask(pairs=2):
    g = torch.Generator().manual_seed(0)
    valid = (torch.rand(pairs, 4, 6, generator=g) < 0.3).float()
    valid[0, 0, 0] = 0.5  # a partly measured cell
    return {
        "image_latent": torch.randn(pairs, 16, 4, 6, generator=g), "depth_latent": torch.randn(pairs, 16, 4, 6, generator=g),
        "t5": torch.randn(pairs, 5, 8, generator=g), "clip_pooled": torch.randn(pairs, 7, generator=g), "depth_valid": valid,
    }, {"t5": torch.zeros(5, 8), "clip_pooled": torch.zeros(7)}


def test_masked_pixels_are_ignored_exactly_by_the_depth_loss():
    batch, empty = _batch_with_mask()
    cfg = TrainConfig(caption_dropout=0.0)
    pairs, missing = 2, batch["depth_valid"] == 0
    garbage = torch.randn(pairs, 16, 4, 6) * 100

    def run(noisy_missing: bool):
        pred = torch.zeros(2 * pairs, 16, 4, 6, requires_grad=True)

        def velocity(img, t):
            out = pred.clone()
            if noisy_missing:  # anything at all where nothing was measured
                out = torch.cat([out[:pairs], torch.where(missing[:, None], garbage, out[pairs:])])
            return pack(out)

        _, _, loss_depth = flow_matching_loss(lambda *a, **k: velocity(a[0], a[4]), batch, empty, cfg, torch.Generator().manual_seed(1), "cpu", True)
        loss_full, _, _ = flow_matching_loss(lambda *a, **k: velocity(a[0], a[4]), batch, empty, cfg, torch.Generator().manual_seed(1), "cpu", True)
        loss_full.backward()
        return loss_depth, pred.grad

    clean, grad = run(False)
    noisy, _ = run(True)
    assert clean.item() == noisy.item()
    assert torch.all(grad[pairs:][missing[:, None].expand(-1, 16, -1, -1)] == 0)
    assert torch.all(grad[pairs:][(~missing)[:, None].expand(-1, 16, -1, -1)] != 0)
    # the weighted mean by hand: sum(w * err) / (C * sum(w))
    err = torch.rand(pairs, 16, 4, 6)
    w = batch["depth_valid"]
    assert masked_mean(err, w).item() == pytest.approx(((err * w[:, None]).sum() / (16 * w.sum())).item(), rel=1e-6)
    assert masked_mean(err, torch.ones(pairs, 4, 6)).item() == pytest.approx(err.mean().item(), rel=1e-6)
    assert masked_mean(err, torch.zeros(pairs, 4, 6)).item() == 0.0


def test_kitti_png_reads_value_over_256_metres_and_zero_as_missing(tmp_path):
    metres = np.array([[2.0, 0.0, 4.0, 8.0], [0.0, 1.0, 0.0, 16.0], [5.0, 0.0, 0.0, 2.5], [10.0, 20.0, 0.0, 0.0]], np.float32)
    png = tmp_path / "kitti.png"
    Image.fromarray((metres * 256).astype(np.uint16)).save(png)
    assert Image.open(png).mode.startswith("I")
    disparity, coverage = load_sparse_disparity(png, 4, (4, 4), "kitti")
    measured = metres > 0
    np.testing.assert_allclose(disparity[measured], 1.0 / metres[measured], rtol=1e-6)
    assert np.array_equal(coverage > 0, measured) and np.all(coverage[measured] == 1)
    with pytest.raises(ValueError, match="no measured pixel"):
        Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "empty.png")
        load_sparse_disparity(tmp_path / "empty.png", 4, (4, 4), "kitti")


def test_normalisation_uses_measured_pixels_and_fills_the_rest():
    d = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, 5.0]])
    valid = d > 0
    out = normalize_valid(d, valid)
    assert torch.equal(out[valid], torch.tensor([0.0, 0.5, 0.25, 1.0]))
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    filled = fill_missing(torch.tensor([[4.0, 0.0], [0.0, 0.0]]), torch.tensor([[True, False], [False, False]]))
    assert torch.equal(filled, torch.full((2, 2), 4.0))
    assert torch.equal(latent_validity(torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0]]), 2), torch.tensor([[0.75, 0.0]]))


def test_sparse_dataset_carries_its_mask_into_the_cache_and_training(tmp_path):
    from jointdit_trainer.preprocess import preprocess
    from jointdit_trainer.train import train

    values = make_setup(tmp_path, n=2)
    rng = np.random.default_rng(0)
    depth_dir = tmp_path / "data" / "depth"
    for path in list(depth_dir.iterdir()):
        path.unlink()
    for stem in ("s0", "s1"):  # 48x40 images: metres in 2..10, 20% of the pixels measured, the left half empty
        metres = rng.uniform(2, 10, (40, 48)) * (rng.random((40, 48)) < 0.2)
        metres[:, :24] = 0
        Image.fromarray((metres * 256).astype(np.uint16)).save(depth_dir / f"{stem}.png")
    overrides = [f"{k}={json.dumps(v)}" for k, v in values.items()] + ["depth_kind=kitti"]
    manifest = preprocess(load_config(overrides=overrides))
    assert manifest["sparse_depth"] is True and manifest["samples"] == ["s0", "s1"]
    sample = load_file(str(tmp_path / "cache" / "samples" / "s0.safetensors"))
    valid = sample["depth_valid"]
    assert valid.shape == tuple(manifest["latent_shape"][1:])
    # the image is resized 40 -> 32 rows and centre-cropped, so the empty left half covers the left latent columns
    assert torch.all(valid[:, :3] == 0) and torch.all(valid[:, -3:] > 0) and valid.max() < 0.6
    train(load_config(overrides=overrides + ["max_train_steps=2", "save_every_n_steps=0"]))
    log = [json.loads(line) for line in (tmp_path / "out" / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["loss_depth"]) for r in log)
