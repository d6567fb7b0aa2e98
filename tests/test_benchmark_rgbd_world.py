"""Item 4 of the benchmark: the demo world's test split, written in DIODE's layout, scored by the benchmark
command, gives exactly rgbd_world.evaluation.depth's figure for the same scenes, steps and seed."""

import json

import numpy as np
import pytest

from jointdit_trainer.__main__ import main
from rgbd_world.evaluation.benchmark_split import write_split
from rgbd_world.evaluation.depth import score
from rgbd_world.stack import depth_estimation, held_out_scenes, load_stack

COUNT, STEPS = 3, 2


def test_the_split_is_in_diodes_layout(tmp_path):
    write_split(tmp_path, count=2, start=5)
    names = sorted(p.name for p in (tmp_path / "test").iterdir())
    assert names == ["00005.png", "00005_depth.npy", "00005_depth_mask.npy", "00006.png", "00006_depth.npy", "00006_depth_mask.npy"]
    depth, mask = np.load(tmp_path / "test" / "00005_depth.npy"), np.load(tmp_path / "test" / "00005_depth_mask.npy")
    assert depth.shape == (64, 64, 1) and depth.dtype == np.float32 and mask.shape == (64, 64)
    np.testing.assert_array_equal(depth[..., 0], held_out_scenes(1, start=5)[0].depth)


def test_the_benchmark_command_reproduces_rgbd_world_evaluate(tmp_path):
    write_split(tmp_path / "split", count=COUNT)
    common = ["evaluate", "--dataset", "rgbd_world", "--data-dir", str(tmp_path / "split"), "--model-dir", "rgbd_world/model",
              "--processing-resolution", "0", "--batch-size", str(COUNT), "--steps", str(STEPS), "--no-progress"]
    assert main(common + ["--fit-zero-disparity", "--out", str(tmp_path / "out")]) == 0
    ours = json.loads((tmp_path / "out" / "results.json").read_text())
    scenes = held_out_scenes(COUNT)
    stack = load_stack("rgbd_world/model")
    theirs = score(depth_estimation(stack, np.stack([s.rgb for s in scenes]), steps=STEPS, seed=0, batch=COUNT), [s.depth for s in scenes])
    assert ours["images"] == COUNT
    assert ours["metrics"]["abs_rel"] == pytest.approx(theirs["abs_rel"], rel=1e-12)
    assert ours["metrics"]["delta1"] == pytest.approx(theirs["delta1"], rel=1e-12)
    # Marigold's own disparity fit leaves the pixels predicted at disparity 0 out: another (close) figure
    assert main(common + ["--out", str(tmp_path / "marigold")]) == 0
    marigold = json.loads((tmp_path / "marigold" / "results.json").read_text())["metrics"]["abs_rel"]
    assert marigold != pytest.approx(theirs["abs_rel"], rel=1e-6) and marigold == pytest.approx(theirs["abs_rel"], rel=0.1)


def test_the_predictor_returns_disparity_at_the_photos_size():
    from jointdit_trainer.benchmark.predictor import estimate_disparity, load_model_folder

    estimator = load_model_folder("rgbd_world/model")
    photo = np.random.default_rng(0).integers(0, 256, (1, 50, 90, 3), dtype=np.uint8)  # processed at 32 x 64, returned at 50 x 90
    one = estimate_disparity(estimator, photo, seed=0, steps=1, processing_resolution=64)
    two = estimate_disparity(estimator, photo, seed=0, steps=1, processing_resolution=64, ensemble_size=2)
    assert one.shape == two.shape == (1, 50, 90) and one.dtype == np.float32
    assert one.min() >= 0 and one.max() <= 1 and not np.array_equal(one, two)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        estimate_disparity(estimator, photo[0], steps=1)


def test_the_command_end_to_end_on_a_nyuv2_tar(tmp_path, capsys):
    """Marigold's BASE_DATA_DIR with a one-image NYUv2 tar: read, processed at 64 px, scored at 480 x 640 in the Eigen crop."""
    from test_benchmark_readers import png, write

    depth_mm = np.tile(np.linspace(1000, 6000, 640, dtype=np.float32), (480, 1)).astype(np.uint16)
    rgb = np.repeat((255 - depth_mm // 24).astype(np.uint8)[..., None], 3, axis=-1)
    files = {"test/kitchen_0004/rgb_0001.png": png(rgb), "test/kitchen_0004/depth_0001.png": png(depth_mm)}
    (tmp_path / "base" / "nyuv2").mkdir(parents=True)
    write(tmp_path / "base" / "nyuv2" / "nyu_labeled_extracted", files, as_tar=True)
    args = ["evaluate", "--dataset", "nyuv2", "--data-dir", str(tmp_path / "base"), "--model-dir", "rgbd_world/model", "--any-size",
            "--processing-resolution", "64", "--steps", "1", "--no-progress", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "| NYUv2 test | 1 |" in capsys.readouterr().out
    row = json.loads((tmp_path / "out" / "per_image.jsonl").read_text())
    assert row["name"] == "test/kitchen_0004/rgb_0001.png" and 0 < row["abs_rel"] < 1 and 0 <= row["delta1"] <= 1


def test_the_step_cache_and_the_fp8_base_reach_the_model():
    """--cache-threshold: 0 leaves every step computed (bit for bit the plain run), a large one reuses steps (another
    result); --fp8-base: the base's linear weights stored in float8, the estimate close to the full-precision one."""
    import torch

    from jointdit_trainer.benchmark.predictor import estimate_disparity, load_model_folder
    from jointdit_trainer.frozen_base import FrozenLinear

    photos = np.stack([s.rgb for s in held_out_scenes(2)])
    estimator = load_model_folder("rgbd_world/model")
    plain = estimate_disparity(estimator, photos, steps=6, processing_resolution=0)
    assert np.array_equal(estimate_disparity(estimator, photos, steps=6, processing_resolution=0, cache_threshold=0.0), plain)
    cached = estimate_disparity(estimator, photos, steps=6, processing_resolution=0, cache_threshold=10.0)  # reuse whenever allowed
    assert not np.array_equal(cached, plain) and np.abs(cached - plain).mean() < 0.2
    fp8 = load_model_folder("rgbd_world/model", fp8_base=True)
    linears = [m for m in fp8.model.base.modules() if isinstance(m, FrozenLinear)]
    assert linears and all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
    low = estimate_disparity(fp8, photos, steps=6, processing_resolution=0)
    assert not np.array_equal(low, plain) and np.abs(low - plain).mean() < 0.02
