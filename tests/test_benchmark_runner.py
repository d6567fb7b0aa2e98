"""The benchmark loop: scores, resume after an interruption, reports, and the errors a user sees."""

import dataclasses
import json

import numpy as np
import pytest

from jointdit_trainer.__main__ import main
from jointdit_trainer.benchmark.datasets import get_spec
from jointdit_trainer.benchmark.readers import BenchmarkData
from jointdit_trainer.benchmark.runner import SettingsMismatch, run_benchmark
from test_benchmark_readers import png, rgb_of, write

SHAPE = (12, 16)


def scannet(tmp_path, count=3):
    files = {}
    for i in range(count):
        depth = np.random.default_rng(i).integers(800, 6000, SHAPE).astype(np.uint16)
        files[f"scene{i:04d}_00/color/000100.jpg"] = png(rgb_of(*SHAPE, seed=i))  # the reader decodes by content, not suffix
        files[f"scene{i:04d}_00/depth/000100.png"] = png(depth)
    spec = dataclasses.replace(get_spec("scannet"), count=None)
    return BenchmarkData(spec, write(tmp_path / "scannet", files, False))


def true_disparity(data):
    """A predictor that returns an affine map of the true disparity (a perfect relative prediction)."""
    by_rgb = {data[i].rgb.tobytes(): data[i].depth for i in range(len(data))}
    calls = []

    def predict(rgb, seed):
        calls.append(seed)
        return np.stack([0.2 / np.maximum(by_rgb[im.tobytes()], 1e-3) + 0.1 for im in rgb])

    return predict, calls


def test_a_perfect_relative_disparity_scores_perfectly_and_reports_are_written(tmp_path):
    data = scannet(tmp_path)
    predict, calls = true_disparity(data)
    result = run_benchmark(data, predict, tmp_path / "out", {"model": "oracle"}, seed=7, batch_size=2, progress=False)
    assert calls == [7, 9]  # a batch starting at image i uses seed + i
    assert result["images"] == 3 and result["metrics"]["abs_rel"] < 1e-6 and result["metrics"]["delta1"] == 1.0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["metrics"] == pytest.approx(result["metrics"])
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| ScanNet | 3 | 0.00 |" in table and "AbsRel x100" in table and "model oracle" in table
    # a depth-alignment run of the same disparity is worse: the alignment matters
    depth_run = run_benchmark(data, predict, tmp_path / "out_depth", {"model": "oracle"}, alignment="depth", progress=False)
    assert depth_run["metrics"]["abs_rel"] > 0.01


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    data = scannet(tmp_path)
    predict, calls = true_disparity(data)

    def interrupted(rgb, seed):
        if seed == 2:
            raise KeyboardInterrupt
        return predict(rgb, seed)

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(data, interrupted, tmp_path / "out", {"model": "oracle"}, progress=False)
    lines = (tmp_path / "out" / "per_image.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1]
    with open(tmp_path / "out" / "per_image.jsonl", "a") as f:
        f.write('{"index": 2, "na')  # a line cut by the interruption
    calls.clear()
    result = run_benchmark(data, predict, tmp_path / "out", {"model": "oracle"}, progress=False)
    assert calls == [2] and result["images"] == 3
    assert [json.loads(line)["index"] for line in (tmp_path / "out" / "per_image.jsonl").read_text().splitlines()] == [0, 1, 2]
    with pytest.raises(SettingsMismatch, match="model: 'oracle' -> 'other'"):
        run_benchmark(data, predict, tmp_path / "out", {"model": "other"}, progress=False)


def test_a_prediction_of_the_wrong_shape_is_refused(tmp_path):
    data = scannet(tmp_path, 1)
    with pytest.raises(ValueError, match=r"predictions of shape \(1, 6, 8\) for 1 images of 16 x 12"):
        run_benchmark(data, lambda rgb, seed: np.ones((1, 6, 8)), tmp_path / "out", {}, progress=False)


def test_command_line_errors_say_what_is_wrong(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "nyuv2", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    scannet(tmp_path)
    args = ["evaluate", "--dataset", "scannet", "--data-dir", str(tmp_path / "scannet"), "--no-progress"]
    assert main(args) == 2
    assert "holds 3 ScanNet samples with ground truth, the benchmark has 800" in capsys.readouterr().err
    assert main(args + ["--any-size", "--flux", "flux1-dev.safetensors"]) == 2
    assert "missing: --addons --ae --clip-l --t5xxl" in capsys.readouterr().err
    assert main(args + ["--any-size", "--model-dir", str(tmp_path)]) == 2
    assert "has no model.json" in capsys.readouterr().err
