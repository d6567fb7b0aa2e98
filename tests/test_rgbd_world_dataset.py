"""RGB-D world dataset writer: layout the trainer reads, disparity convention."""

import json

import numpy as np
import pytest
from PIL import Image

from rgbd_world.world import scenes as W
from rgbd_world.world.dataset import write_dataset
from jointdit_trainer.data import load_disparity, load_image, scan_dataset


def test_written_folder_is_a_trainer_dataset_with_normalised_disparity(tmp_path):
    stems = write_dataset(tmp_path, "test", count=3, size=32, start=5, progress=False)
    index = W.split_indices("test")[5]
    assert stems[0] == f"test_{index:07d}"
    samples, problems = scan_dataset(tmp_path)
    assert problems == [] and [s.stem for s in samples] == stems
    s = W.scene(index, size=32)
    assert samples[0].caption == s.caption
    assert np.array_equal(np.asarray(Image.open(samples[0].image_path)), s.rgb)
    metric = np.load(tmp_path / "depth_metric" / f"{stems[0]}.npy")
    np.testing.assert_array_equal(metric, s.depth)
    d01 = np.load(samples[0].depth_path)
    disparity = 1.0 / s.depth.astype(np.float64)
    expected = (disparity - disparity.min()) / (disparity.max() - disparity.min())
    np.testing.assert_allclose(d01, expected, atol=1e-6)
    assert d01.min() == 0.0 and d01.max() == 1.0
    assert d01[s.labels >= 0].mean() > d01[s.labels == -2].mean()  # near = large
    _, _, original = load_image(samples[0].image_path, 32)
    np.testing.assert_allclose(load_disparity(samples[0].depth_path, 32, original), d01, atol=1e-6)
    meta = json.loads((tmp_path / "world.json").read_text())
    assert meta["stems"][stems[0]] == index and meta["size"] == 32


def test_png16_depth_and_refusals(tmp_path):
    write_dataset(tmp_path, "train", count=1, size=32, depth_format="png16", progress=False)
    png = np.asarray(Image.open(tmp_path / "depth" / "train_0000000.png")).astype(np.float64) / 65535
    npy_dir = tmp_path / "npy"
    write_dataset(npy_dir, "train", count=1, size=32, progress=False)
    np.testing.assert_allclose(png, np.load(npy_dir / "depth" / "train_0000000.npy"), atol=1 / 65535)
    with pytest.raises(ValueError, match="already holds"):
        write_dataset(tmp_path, "train", count=1, size=64, progress=False)
    with pytest.raises(ValueError, match="outside"):
        write_dataset(tmp_path / "x", "test", count=5, start=len(W.split_indices("test")) - 2, progress=False)
    with pytest.raises(ValueError, match="depth_format"):
        write_dataset(tmp_path / "y", "train", count=1, depth_format="exr", progress=False)
